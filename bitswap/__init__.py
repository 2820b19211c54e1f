"""bitswap: lossless image compression with hierarchical VAEs and bits-back coding.

The package is layered so that each piece can be tested on its own:

- :mod:`bitswap.ans`      vectorized rANS stack (numpy)
- :mod:`bitswap.codecs`   push/pop codecs over the stack
- :mod:`bitswap.vae`      the Bit-Swap ResNet VAE
- :mod:`bitswap.coders`   Bit-Swap and BB-ANS over any hierarchical model
"""

__version__ = "0.1.0"
