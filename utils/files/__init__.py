"""Files: atomic writes (`atomic`), CoReEcho checkpoints in the released format (`checkpoint`), weights by
path or `hf://` name (`weights`) and the embeddings.npz format (`embeddings_file`)."""
