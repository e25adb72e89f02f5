from .rnc import RnCLoss

__all__ = ["RnCLoss"]
