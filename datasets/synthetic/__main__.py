"""python -m datasets.synthetic --out DIR --n 100 --seed 0: a synthetic EchoNet-Dynamic folder."""
from .echonet import main

main()
