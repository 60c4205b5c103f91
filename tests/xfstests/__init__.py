"""Behaviours xfstests (FSTYP=fuse) found wrong, each a test on a real mount."""
