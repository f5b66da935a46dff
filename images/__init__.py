"""Container images built on this machine, without Docker or a registry (`make images`).

One directory per image (`images/<name>/image.toml` and its pinned packages), read by
`images/build.py`; see docs/images.md.
"""
