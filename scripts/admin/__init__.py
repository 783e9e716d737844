"""Admin commands (`docstore-admin`): create-superuser, seed, export, outbox."""
