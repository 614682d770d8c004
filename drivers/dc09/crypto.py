"""AES-CBC of DC-09 (ANSI/SIA DC-09-2013 §5.4.6): the only user of ``cryptography``.

IV = 16 zero bytes; the part after ``[`` is encrypted and written as hex (upper- or
lower-case). Keys are 128, 192 or 256 bits.

How a key file's text becomes the key (``ascii`` or ``hex``) is
:meth:`gateway.config.panels.PanelConfig.key`.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 16
_IV = bytes(BLOCK)


def decrypt(key: bytes, hex_text: str) -> bytes:
    """Decrypt DC-09 ciphertext written as hex.

    Raises:
        ValueError: not hex, or not a whole number of 16-byte blocks.
    """
    data = bytes.fromhex(hex_text)
    if not data or len(data) % BLOCK:
        raise ValueError(f"ciphertext of {len(data)} bytes is not whole 16-byte blocks")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(_IV)).decryptor()
    return decryptor.update(data) + decryptor.finalize()


def encrypt(key: bytes, plaintext: bytes) -> str:
    """Encrypt whole blocks (the caller pads) and write them as upper-case hex.

    Raises:
        ValueError: ``plaintext`` is not a whole number of 16-byte blocks.
    """
    if not plaintext or len(plaintext) % BLOCK:
        raise ValueError(f"plaintext of {len(plaintext)} bytes is not whole 16-byte blocks")
    encryptor = Cipher(algorithms.AES(key), modes.CBC(_IV)).encryptor()
    return (encryptor.update(plaintext) + encryptor.finalize()).hex().upper()
