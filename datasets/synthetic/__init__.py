"""Synthetic data in the layouts of the real releases, so that everything runs without them: EchoNet-Dynamic
(`echonet`; `python -m datasets.synthetic`), CAMUS and HMC-QU (`transfer`; `python -m datasets.synthetic.transfer`)."""
