"""``make ui``'s MLflow server: MLflow's own app, with the UI's default view set to model training.

MLflow 3.17's UI opens every experiment in its GenAI view (traces, prompts, sessions) unless
the link says ``?workflowType=machine_learning`` or the browser remembers that the user
switched to "Model training" (localStorage ``mlflow.workflowType_v1``, JSON); it does not read
the experiment's ``mlflow.experimentKind`` tag.  Served with ``mlflow server --app-name
neuroliquid`` (the ``mlflow.app`` entry point in pyproject.toml, MLflow's plugin mechanism for
server apps), the UI's page first stores model training as that choice when the browser
has none, so experiments open in the model-training view; a choice the user made is kept,
and nothing else in the app changes.  ``tests/pipeline/test_browser.py`` checks it in
Chromium against the pinned MLflow minor series.
"""

from __future__ import annotations

WORKFLOW_KEY = "mlflow.workflowType_v1"  # the UI's useLocalStorage key "mlflow.workflowType", version 1
_SCRIPT = (f'<script>try{{if(localStorage.getItem("{WORKFLOW_KEY}")===null)'
           f'localStorage.setItem("{WORKFLOW_KEY}",JSON.stringify("machine_learning"))}}catch(e){{}}</script>')


def default_to_model_training(response):
    """Flask ``after_request``: put :data:`_SCRIPT` first in the UI's HTML page."""
    if response.status_code != 200 or response.mimetype != "text/html":
        return response
    response.direct_passthrough = False  # a file response: read it to edit it
    html = response.get_data(as_text=True)
    if "<head>" in html and WORKFLOW_KEY not in html:
        response.set_data(html.replace("<head>", "<head>" + _SCRIPT, 1))
    return response


def create_app(app=None):
    """The factory ``mlflow server --app-name neuroliquid`` calls (as MLflow's ``basic-auth``)."""
    from mlflow.environment_variables import _MLFLOW_SGI_NAME
    from mlflow.server import app as mlflow_app

    app = app or mlflow_app
    app.after_request(default_to_model_training)
    if _MLFLOW_SGI_NAME.get() == "uvicorn":  # the default server: MLflow's FastAPI app around Flask
        from mlflow.server.fastapi_app import create_fastapi_app

        return create_fastapi_app(app)
    return app
