"""Files: atomic writes (`atomic`), CoReEcho checkpoints in the released format (`checkpoint`), weights by
path or `hf://` name (`weights`), the embeddings.npz format (`embeddings_file`) and a file's identity for caches
and resumed runs (`identity`)."""
