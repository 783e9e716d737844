"""Admin commands (`docstore-admin`); the shell scripts beside this are the entry points."""
