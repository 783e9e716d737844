"""`python -m scripts.admin`: the same commands as `docstore-admin`."""

from scripts.admin.cli import app

app(prog_name="docstore-admin")
