"""The live page: a local server over trained runs, and the image preprocessing it needs."""
