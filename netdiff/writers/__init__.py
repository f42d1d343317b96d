"""Writers of dump formats other tools read (netdiff's own format lives in :mod:`netdiff.manifest`)."""
