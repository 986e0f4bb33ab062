"""Millrace quickstart: a three-step pipeline (prepare → train → evaluate) on the `local`
compute target. Run it with MILLRACE_URL and MILLRACE_TOKEN set:

    .venv/bin/python examples/quickstart/pipeline.py
"""

import os

from pipelines.sdk import (
    Experiment,
    Pipeline,
    PipelineData,
    PipelineParameter,
    PythonScriptStep,
    Workspace,
)

here = os.path.dirname(os.path.abspath(__file__))
ws = Workspace.get(os.environ.get("MILLRACE_WORKSPACE", "demo"))
datastore = ws.get_default_datastore()

prepared = PipelineData("prepared", datastore=datastore)
model = PipelineData("model", datastore=datastore)
report = PipelineData("report", datastore=datastore)
tolerance = PipelineParameter("tolerance", default_value=0.75)

source = os.path.join(here, "src")
prepare = PythonScriptStep(
    script_name="prepare.py",
    arguments=["--output", prepared],
    outputs=[prepared],
    compute_target="local",
    source_directory=source,
)
train = PythonScriptStep(
    script_name="train.py",
    arguments=["--data", prepared, "--epochs", 40, "--output", model],
    inputs=[prepared],
    outputs=[model],
    compute_target="local",
    source_directory=source,
)
evaluate = PythonScriptStep(
    script_name="evaluate.py",
    arguments=["--data", prepared, "--model", model, "--tolerance", tolerance, "--output", report],
    inputs=[prepared, model],
    outputs=[report],
    compute_target="local",
    source_directory=source,
)

pipeline = Pipeline(workspace=ws, steps=[evaluate])  # resolve_closure pulls in the rest
run = Experiment(ws, "quickstart").submit(pipeline, pipeline_parameters={"tolerance": 0.5})
run.wait_for_completion(show_output=True)
print(run.get_metrics()["evaluate.py"])
