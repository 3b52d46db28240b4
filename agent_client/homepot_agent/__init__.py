"""The HOMEPOT agent. No Django here: it runs on Raspberry Pis and POS terminals."""

__version__ = "0.1.0"
