"""Files: atomic writes (`atomic`), CoReEcho checkpoints in the released format (`checkpoint`), weights by
path or `hf://` name (`weights`), the embeddings.npz format (`embeddings_file`) and predict.py's appendable,
resumable result CSVs (`results_stream`)."""
