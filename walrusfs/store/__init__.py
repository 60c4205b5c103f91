"""The Walrus client: store blobs (encode, register, upload, certify) and read them back."""
