"""aarch64 disk images: sniffing formats, materializing (decompress + verify + place), resizing,
the arch check and Fedora CoreOS streams.

Nothing is re-exported here: importing the package must not pull in stream.py (httpx) for a
caller that only sniffs a format. Import the module that holds the name.
"""
