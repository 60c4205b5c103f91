"""The mount: pyfuse3 Operations over trio, SQLite metadata, uploader, checkpoints, renewals."""
