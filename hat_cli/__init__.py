"""hat: Hardware-Aware Transformers (HAT, ACL 2020) as one command-line toolkit.

Importing the package is cheap on purpose: the CLI must start without torch.
"""

__version__ = "0.1.0"
