"""The app object, built from the environment, for `fastapi dev` and `fastapi run`.

Importing it builds the app; everything else (tests, `scripts/serve`, Uvicorn's
factory `api.main:app_from_env`) calls `create_app` instead.
"""

from api.main import create_app

app = create_app()
