"""The SDK's authoring half without a server: steps, data and parameters compiled into the
graph (checked against the server's own ``runs.graph.validate``), environments, compute target
handles, source-directory snapshots (ignore files, size limit, hash cache, upload protocol)
and ``Pipeline.validate()``. The one fake is a workspace whose client records calls and
answers canned JSON (or, for snapshots, keeps blobs in memory like the server)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

import pipelines.sdk.experiment as experiment_module
import pipelines.sdk.snapshot as snapshot_module
from pipelines.sdk import (
    DEFAULT_CPU_IMAGE,
    AmlCompute,
    ComputeTarget,
    ComputeTargetException,
    CondaDependencies,
    ConfigurationError,
    DataPath,
    DataPathComputeBinding,
    DataReference,
    Datastore,
    Environment,
    NotFoundError,
    OutputFileDatasetConfig,
    Pipeline,
    PipelineData,
    PipelineParameter,
    PythonScriptStep,
    RunConfiguration,
    ValidationError,
)
from pipelines.sdk.runconfig import _parse_conda_yaml
from pipelines.sdk.snapshot import IgnoreRules, build_manifest, upload_snapshot
from runs.graph import Known, resolve_parameters
from runs.graph import validate as server_validate

WS_ID = "6f1c1f3e-9a43-4c1b-8d1e-1d2c3b4a5f60"
API = f"workspaces/{WS_ID}/"
STORES = {"workspaceblobstore", "workspacefilestore"}


# ----- the fake at the client seam ---------------------------------------------------------


class FakeResponse:
    def close(self) -> None:
        pass


class FakeClient:
    """Records (method, path, body) and answers from ``answers``: a value, an exception to
    raise, or a callable taking the body. Unknown paths answer 404."""

    def __init__(self, answers: dict[tuple[str, str], Any] | None = None) -> None:
        self.answers: dict[tuple[str, str], Any] = dict(answers or {})
        self.calls: list[tuple[str, str, Any]] = []

    def _answer(self, method: str, path: str, body: Any = None) -> Any:
        self.calls.append((method, path, body))
        if (method, path) not in self.answers:
            raise NotFoundError(f"{method} {path}: not found", status_code=404)
        answer = self.answers[(method, path)]
        if callable(answer):
            answer = answer(body)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def get_json(self, path: str, *, params: Any = None) -> Any:
        return self._answer("GET", path)

    def send_json(self, method: str, path: str, body: Any) -> Any:
        return self._answer(method, path, body)

    def iter_pages(self, path: str, *, params: Any = None) -> Any:
        yield from self._answer("GET", path)

    def delete(self, path: str, *, params: Any = None) -> Any:
        return self._answer("DELETE", path)

    def request(self, method: str, path: str, *, data: Any = None, **kwargs: Any) -> Any:
        content = data if isinstance(data, bytes) else b"".join(iter(data))
        self._answer(method, path, content)
        return FakeResponse()

    def paths(self, method: str) -> list[str]:
        return [path for m, path, _ in self.calls if m == method]


class FakeWorkspace:
    def __init__(self, client: FakeClient | None = None) -> None:
        self._client = client or FakeClient()
        self.name = "forecast"
        self.id = WS_ID

    @property
    def _api(self) -> str:
        return API


class SnapshotServer:
    """The snapshot endpoints' behaviour, in memory: blobs by hash, manifests by digest."""

    def __init__(self, client: FakeClient) -> None:
        self.blobs: dict[str, bytes] = {}
        self.snapshots: dict[str, dict[str, Any]] = {}
        self.client = client
        client.answers[("POST", f"{API}snapshots/missing/")] = lambda body: {
            "missing": [h for h in body["hashes"] if h not in self.blobs]
        }
        client.answers[("POST", f"{API}snapshots/")] = self.commit
        client.answers[("POST", f"{API}pipelines/validate/")] = lambda body: {
            "valid": True,
            "steps": len(body["graph"]["steps"]),
        }

    def commit(self, body: dict[str, Any]) -> dict[str, Any]:
        manifest = body["manifest"]
        assert all(m["sha256"] in self.blobs for m in manifest.values())
        digest = hashlib.sha256(
            json.dumps(
                {p: [m["sha256"], m["mode"] & 0o100] for p, m in sorted(manifest.items())},
                separators=(",", ":"),
            ).encode()
        ).hexdigest()
        self.snapshots[digest] = manifest
        self.client.answers[("GET", f"{API}snapshots/{digest}/")] = {"digest": digest}
        return {"digest": digest, "file_count": len(manifest)}

    def expect_blob(self, sha256: str) -> None:
        def put(content: bytes) -> None:
            assert hashlib.sha256(content).hexdigest() == sha256
            self.blobs[sha256] = content

        self.client.answers[("PUT", f"{API}snapshots/blobs/{sha256}")] = put


def write(root: Path, files: dict[str, str | bytes]) -> Path:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write(
        tmp_path / "project",
        {"train.py": "print('train')\n", "extract.py": "print('x')\n", "compare.py": "pass\n"},
    )


@pytest.fixture
def ws() -> FakeWorkspace:
    return FakeWorkspace()


def blob(ws: FakeWorkspace, name: str = "workspaceblobstore") -> Datastore:
    return Datastore._from_data(ws, {"name": name, "kind": "local"})  # type: ignore[arg-type]


def aml(ws: FakeWorkspace, name: str = "aml-compute") -> ComputeTarget:
    data = {"name": name, "kind": "docker", "queue": "docker", "max_concurrency": 4}
    return ComputeTarget._from_data(ws, data)  # type: ignore[arg-type]


def known_for(pipeline: Pipeline, targets: set[str] | None = None) -> Known:
    manifests = pipeline._compile().manifests.values()
    return Known(
        compute_targets=targets or {"aml-compute", "local"},
        datastores=STORES,
        snapshots={m.digest: set(m.files) for m in manifests},
    )


def step_named(graph: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in graph["steps"] if s["name"] == name)


# ----- the seed document's pipeline --------------------------------------------------------


def seed_pipeline(ws: FakeWorkspace, project: Path) -> Pipeline:
    """The pipeline of the seed document, as written there (only imports differ)."""
    def_blob_store = Datastore._from_data(ws, {"name": "workspaceblobstore"})  # type: ignore[arg-type]
    blob_input_data = DataReference(
        datastore=def_blob_store,
        data_reference_name="test_data",
        path_on_datastore="20newsgroups/20news.pkl",
    )
    processed_data1 = PipelineData(
        "processed_data1", datastore=def_blob_store, output_name="processed_data1"
    )
    processed_data2 = PipelineData("processed_data2", datastore=def_blob_store)
    out_data3 = PipelineData("out_data3", datastore=def_blob_store)
    compute_target = aml(ws)
    pipeline_param = PipelineParameter(name="pipeline_arg", default_value=10)
    train_step = PythonScriptStep(
        script_name="train.py",
        arguments=["--input", blob_input_data, "--output", processed_data1],
        inputs=[blob_input_data],
        outputs=[processed_data1],
        compute_target=compute_target,
        source_directory=project,
    )
    extract_step = PythonScriptStep(
        script_name="extract.py",
        arguments=["--input_data", blob_input_data, "--output", processed_data2],
        inputs=[blob_input_data],
        outputs=[processed_data2],
        compute_target=compute_target,
        source_directory=project,
    )
    compare_step = PythonScriptStep(
        script_name="compare.py",
        arguments=[
            "--comp_data1",
            processed_data1,
            "--comp_data2",
            processed_data2,
            "--output_data",
            out_data3,
            "--param1",
            pipeline_param,
        ],
        inputs=[processed_data1, processed_data2],
        outputs=[out_data3],
        target=compute_target,
        source_directory=project,
    )
    compare_models = [train_step, extract_step, compare_step]
    return Pipeline(workspace=ws, steps=[compare_models])  # type: ignore[arg-type]


def test_the_seed_documents_pipeline_compiles_to_a_graph_the_server_accepts(ws, project):
    pipeline = seed_pipeline(ws, project)
    graph = pipeline._graph()
    digest = build_manifest(project).digest
    common = {"snapshot": digest, "compute_target": "aml-compute", "allow_reuse": True}
    reference = {"datastore": "workspaceblobstore", "path": "20newsgroups/20news.pkl"}
    assert graph == {
        "parameters": {"pipeline_arg": {"type": "int", "default": 10}},
        "steps": [
            {
                "name": "train.py",
                "script": "train.py",
                "arguments": [
                    "--input",
                    {"input": "test_data"},
                    "--output",
                    {"output": "processed_data1"},
                ],
                "inputs": {"test_data": {**reference, "mode": "mount"}},
                "outputs": {"processed_data1": {"datastore": "workspaceblobstore"}},
                "run_after": [],
                **common,
            },
            {
                "name": "extract.py",
                "script": "extract.py",
                "arguments": [
                    "--input_data",
                    {"input": "test_data"},
                    "--output",
                    {"output": "processed_data2"},
                ],
                "inputs": {"test_data": {**reference, "mode": "mount"}},
                "outputs": {"processed_data2": {"datastore": "workspaceblobstore"}},
                "run_after": [],
                **common,
            },
            {
                "name": "compare.py",
                "script": "compare.py",
                "arguments": [
                    "--comp_data1",
                    {"input": "processed_data1"},
                    "--comp_data2",
                    {"input": "processed_data2"},
                    "--output_data",
                    {"output": "out_data3"},
                    "--param1",
                    {"parameter": "pipeline_arg"},
                ],
                "inputs": {
                    "processed_data1": {"pipeline_data": "processed_data1", "mode": "mount"},
                    "processed_data2": {"pipeline_data": "processed_data2", "mode": "mount"},
                },
                "outputs": {"out_data3": {"datastore": "workspaceblobstore"}},
                "run_after": [],
                **common,
            },
        ],
    }
    deps = server_validate(graph, known_for(pipeline))
    assert deps == {"train.py": [], "extract.py": [], "compare.py": ["extract.py", "train.py"]}
    assert resolve_parameters(graph, pipeline._parameter_values({"pipeline_arg": 20})) == {
        "pipeline_arg": 20
    }


def test_the_server_refuses_the_seed_graph_on_an_unknown_compute_target(ws, project):
    # The converse: the server check above can fail, so agreement is a real test.
    from runs.graph import GraphError

    pipeline = seed_pipeline(ws, project)
    with pytest.raises(GraphError, match="unknown compute target 'aml-compute'"):
        server_validate(pipeline._graph(), known_for(pipeline, targets={"local"}))


def test_a_datapath_parameter_and_output_file_dataset_config_compile_for_the_server(ws, project):
    store = blob(ws)
    data_param = PipelineParameter(
        "input_datapath", default_value=DataPath(datastore=store, path_on_datastore="raw/2024")
    )
    datapath_input = (data_param, DataPathComputeBinding(mode="download"))
    prepared = OutputFileDatasetConfig(name="prepared", destination=(store, "prep/{run-id}"))
    prep = PythonScriptStep(
        "train.py",
        name="prep",
        arguments=["--raw", datapath_input, "--out", prepared],
        inputs=[datapath_input],
        source_directory=project,
    )
    use = PythonScriptStep(
        "compare.py",
        name="use",
        arguments=["--data", prepared.as_input(), "--flag", True, "--rate", 0.5, "--n", 3],
        source_directory=project,
    )
    pipeline = Pipeline(ws, [use])
    assert pipeline.steps == [prep, use]  # the producer is pulled in from the arguments
    graph = pipeline._graph()
    assert graph["parameters"] == {
        "input_datapath": {
            "type": "datapath",
            "default": {"datastore": "workspaceblobstore", "path": "raw/2024"},
        }
    }
    first = step_named(graph, "prep")
    assert first["inputs"] == {
        "input_datapath": {"parameter": "input_datapath", "mode": "download"}
    }
    assert first["arguments"] == [
        "--raw",
        {"input": "input_datapath"},
        "--out",
        {"output": "prepared"},
    ]
    assert first["outputs"] == {
        "prepared": {"datastore": "workspaceblobstore", "path": "prep/{run-id}"}
    }
    second = step_named(graph, "use")
    assert second["inputs"] == {"prepared": {"pipeline_data": "prepared", "mode": "mount"}}
    assert second["arguments"] == [
        "--data",
        {"input": "prepared"},
        "--flag",
        "True",
        "--rate",
        0.5,
        "--n",
        3,
    ]
    assert server_validate(graph, known_for(pipeline)) == {"prep": [], "use": ["prep"]}
    values = pipeline._parameter_values(
        {"input_datapath": DataPath(datastore="workspacefilestore", path_on_datastore="/other/")}
    )
    assert values == {"input_datapath": {"datastore": "workspacefilestore", "path": "other/"}}
    assert resolve_parameters(graph, values, known_for(pipeline))["input_datapath"] == {
        "datastore": "workspacefilestore",
        "path": "other/",
    }


# ----- steps, closure, names ---------------------------------------------------------------


def test_nested_step_lists_are_flattened_and_each_step_counted_once(ws, project):
    a = PythonScriptStep("train.py", name="a", source_directory=project)
    b = PythonScriptStep("extract.py", name="b", source_directory=project)
    c = PythonScriptStep("compare.py", name="c", source_directory=project)
    pipeline = Pipeline(ws, [[a, [b]], (c, a), [[[]]]])
    assert [pipeline.step_name(s) for s in pipeline.steps] == ["a", "b", "c"]
    with pytest.raises(TypeError, match=r"steps\[1\]\[0\]"):
        Pipeline(ws, [a, ["train.py"]])


def test_passing_only_the_last_step_pulls_in_its_upstream_steps(ws, project):
    raw = PipelineData("raw", datastore=blob(ws))
    clean = PipelineData("clean")
    fetch = PythonScriptStep("extract.py", name="fetch", outputs=[raw], source_directory=project)
    prep = PythonScriptStep(
        "train.py",
        name="prep",
        arguments=["--in", raw.as_download(), "--out", clean],
        outputs=[clean],
        source_directory=project,
    )
    audit = PythonScriptStep("compare.py", name="audit", source_directory=project)
    last = PythonScriptStep("compare.py", name="last", inputs=[clean], source_directory=project)
    last.run_after(audit)
    pipeline = Pipeline(ws, [last], default_datastore="workspacefilestore")
    assert pipeline.steps == [fetch, prep, audit, last]
    graph = pipeline._graph()
    assert step_named(graph, "prep")["inputs"] == {
        "raw": {"pipeline_data": "raw", "mode": "download"}
    }
    # No datastore on the data: the pipeline's default_datastore.
    assert step_named(graph, "prep")["outputs"] == {"clean": {"datastore": "workspacefilestore"}}
    assert step_named(graph, "last")["run_after"] == ["audit"]
    assert server_validate(graph, known_for(pipeline)) == {
        "fetch": [],
        "prep": ["fetch"],
        "audit": [],
        "last": ["audit", "prep"],
    }
    alone = Pipeline(ws, [last], resolve_closure=False)
    with pytest.raises(ValidationError) as caught:
        alone._graph()
    text = caught.value.detail
    assert "consumes PipelineData 'clean', which is never produced" in text
    assert "its producer PythonScriptStep(name='prep'" in text
    assert "runs after PythonScriptStep(name='audit'" in text


def test_steps_sharing_a_script_get_unique_names_like_azure(ws, project):
    write(project, {"scripts/1-score.py": "pass\n"})
    one = PythonScriptStep("train.py", source_directory=project)
    two = PythonScriptStep("train.py", source_directory=project)
    named = PythonScriptStep("extract.py", name="train.py", source_directory=project)
    nested = PythonScriptStep("scripts/1-score.py", source_directory=project)
    pipeline = Pipeline(ws, [one, two, named, nested])
    names = [s["name"] for s in pipeline._graph()["steps"]]
    assert names == ["train.py_2", "train.py_3", "train.py", "scripts_1-score.py"]
    assert step_named(pipeline._graph(), "scripts_1-score.py")["script"] == "scripts/1-score.py"


@pytest.mark.parametrize(
    "given",
    ["aml-compute", ("aml-compute", "AmlCompute"), "object"],
)
def test_a_compute_target_may_be_an_object_a_name_or_a_name_and_type(ws, project, given):
    target = aml(ws) if given == "object" else given
    step = PythonScriptStep("train.py", compute_target=target, source_directory=project)
    assert Pipeline(ws, [step])._graph()["steps"][0]["compute_target"] == "aml-compute"


def test_without_a_compute_target_the_runconfig_target_else_local_is_used(ws, project):
    config = RunConfiguration()
    config.target = aml(ws, "gpu-cluster")
    with_config = PythonScriptStep("train.py", runconfig=config, source_directory=project)
    bare = PythonScriptStep("extract.py", source_directory=project)
    graph = Pipeline(ws, [with_config, bare])._graph()
    assert [s["compute_target"] for s in graph["steps"]] == ["gpu-cluster", "local"]
    with pytest.raises(ValueError, match="disagree"):
        PythonScriptStep("train.py", compute_target="a", target="b")
    with pytest.raises(TypeError, match="compute_target must be"):
        PythonScriptStep("train.py", compute_target=42)


def test_params_and_runconfig_pipeline_params_are_refused_by_name():
    with pytest.raises(NotImplementedError, match=r"params= is not offered.*AML_PARAMETER_"):
        PythonScriptStep("train.py", params={"alpha": 1})
    with pytest.raises(NotImplementedError, match=r"runconfig_pipeline_params="):
        PythonScriptStep("train.py", runconfig_pipeline_params={"NodeCount": 2})
    # Empty is fine, as azureml scripts often pass params={}.
    assert PythonScriptStep("train.py", params={}).script_name == "train.py"


def test_parameter_types_follow_the_default_value(ws):
    kinds = {
        "s": ("text", "string"),
        "i": (3, "int"),
        "f": (0.5, "float"),
        "b": (False, "bool"),
        "d": (DataPath(datastore=blob(ws), path_on_datastore="x"), "datapath"),
    }
    for name, (value, kind) in kinds.items():
        assert PipelineParameter(name, default_value=value).type == kind
    with pytest.raises(TypeError, match=r"PipelineParameter 'bad'.*list"):
        PipelineParameter("bad", default_value=[1])
    with pytest.raises(ValueError, match="Invalid PipelineParameter name"):
        PipelineParameter("1x", default_value=1)
    pipeline = Pipeline(ws, [PythonScriptStep("a.py")])
    with pytest.raises(TypeError, match=r"pipeline_parameters\.n: dict"):
        pipeline._parameter_values({"n": {"a": 1}})


def test_output_file_dataset_config_readers_are_not_offered():
    output = OutputFileDatasetConfig(name="out")
    with pytest.raises(NotImplementedError, match=r"OutputFileDatasetConfig\.read_delimited_files"):
        output.read_delimited_files()
    assert output.as_upload(overwrite=True).name == "out"
    with pytest.raises(TypeError, match="destination must be a"):
        OutputFileDatasetConfig(name="o", destination="store/path")  # type: ignore[arg-type]


# ----- environments ------------------------------------------------------------------------


def test_an_environment_compiles_to_pip_packages_and_an_image(ws, project):
    config = RunConfiguration()
    config.environment.docker.enabled = True
    config.environment.docker.base_image = DEFAULT_CPU_IMAGE
    config.environment.python.conda_dependencies = CondaDependencies.create(
        pip_packages=["pandas==2.2.2", "azureml-defaults", "requests"],
        conda_packages=["numpy=1.26", "python=3.8", "pip", "conda-forge::scikit-learn>=1.3"],
    )
    custom = RunConfiguration()
    custom.environment = Environment("trainer")
    custom.environment.docker.base_image = "my-registry-free-image:1"
    managed = RunConfiguration()
    managed.environment.python.user_managed_dependencies = True
    managed.environment.python.conda_dependencies.add_pip_package("ignored")
    steps = [
        PythonScriptStep("train.py", name="a", runconfig=config, source_directory=project),
        PythonScriptStep("train.py", name="b", runconfig=custom, source_directory=project),
        PythonScriptStep("train.py", name="c", runconfig=managed, source_directory=project),
    ]
    pipeline = Pipeline(ws, steps)
    graph = pipeline._graph()
    # azureml's own packages are dropped; conda numpy/scikit-learn come from pip.
    assert step_named(graph, "a")["environment"] == {
        "pip_packages": ["numpy==1.26.*", "scikit-learn>=1.3", "pandas==2.2.2", "requests"]
    }
    assert step_named(graph, "b")["environment"] == {
        "pip_packages": [],
        "base_image": "my-registry-free-image:1",
        "name": "trainer",
    }
    assert step_named(graph, "c")["environment"] == {"pip_packages": []}
    server_validate(graph, known_for(pipeline))


def test_a_conda_package_without_a_pip_equivalent_is_refused_naming_it(ws, project):
    config = RunConfiguration()
    config.environment.python.conda_dependencies.add_conda_package("cudatoolkit=11.8")
    step = PythonScriptStep("train.py", name="gpu", runconfig=config, source_directory=project)
    with pytest.raises(ValidationError) as caught:
        Pipeline(ws, [step])._graph()
    assert "step 'gpu' (train.py)" in caught.value.detail
    assert "conda package 'cudatoolkit=11.8' is not supported" in caught.value.detail
    assert "pip_packages=['cudatoolkit']" in caught.value.detail


CONDA_FILE = """\
# an environment
name: project_environment
channels:
  - conda-forge
dependencies:
  - python=3.10
  - numpy=1.26  # pinned
  - pip
  - pip:
    - pandas==2.2.2
    - "requests>=2"
"""


def test_a_conda_file_is_read_with_or_without_pyyaml(tmp_path, monkeypatch):
    path = tmp_path / "env.yml"
    path.write_text(CONDA_FILE)
    import yaml

    assert _parse_conda_yaml(CONDA_FILE, "env.yml") == yaml.safe_load(CONDA_FILE)
    monkeypatch.setitem(sys.modules, "yaml", None)  # as if PyYAML were not installed
    env = Environment.from_conda_specification("trainer", path)
    deps = env.python.conda_dependencies
    assert deps.pip_packages == ["pandas==2.2.2", "requests>=2"]
    assert deps.conda_packages == ["python=3.10", "numpy=1.26", "pip"]
    assert env._to_spec("here")[0] == {
        "pip_packages": ["numpy==1.26.*", "pandas==2.2.2", "requests>=2"],
        "name": "trainer",
    }
    path.write_text("dependencies:\n  numpy: 1\n")
    with pytest.raises(ValueError, match=r"env\.yml, line 2: expected a list item"):
        Environment.from_conda_specification("x", path)


def test_a_pip_requirements_file_is_read_following_includes(tmp_path):
    write(tmp_path, {"base.txt": "numpy>=1.26\n", "req.txt": "# ml\n-r base.txt\npandas  # x\n\n"})
    env = Environment.from_pip_requirements("env", tmp_path / "req.txt")
    assert env.python.conda_dependencies.pip_packages == ["numpy>=1.26", "pandas"]
    write(tmp_path, {"bad.txt": "pandas\n--index-url http://mirror/simple\n"})
    with pytest.raises(ValueError, match=r"bad\.txt, line 2: the option '--index-url'"):
        Environment.from_pip_requirements("env", tmp_path / "bad.txt")


# ----- snapshots ---------------------------------------------------------------------------


IGNORE_TABLE = [
    # (ignore file lines, path, is_dir, ignored?)
    (["*.csv"], "a.csv", False, True),
    (["*.csv"], "deep/er/a.csv", False, True),
    (["*.csv", "!keep.csv"], "keep.csv", False, False),
    (["*.csv", "!keep.csv"], "sub/keep.csv", False, False),
    (["data/"], "data", True, True),
    (["data/"], "data", False, False),
    (["data/"], "sub/data", True, True),
    (["/rooted"], "rooted", False, True),
    (["/rooted"], "sub/rooted", False, False),
    (["**/x"], "x", False, True),
    (["**/x"], "a/b/x", False, True),
    (["a/**"], "a/b/c.txt", False, True),
    (["a/**"], "b/a/c.txt", False, False),
    (["a/**/z.txt"], "a/z.txt", False, True),
    (["a/**/z.txt"], "a/b/c/z.txt", False, True),
    (["doc/*.txt"], "doc/a.txt", False, True),
    (["doc/*.txt"], "doc/sub/a.txt", False, False),
    (["log?.txt"], "log1.txt", False, True),
    (["log?.txt"], "log10.txt", False, False),
    (["[ab].py"], "a.py", False, True),
    (["[!ab].py"], "a.py", False, False),
    (["# comment", "", "  "], "# comment", False, False),
    (["\\#hash"], "#hash", False, True),
    (["*.py", "!*.py", "train.py"], "train.py", False, True),
]


@pytest.mark.parametrize(("lines", "path", "is_dir", "expected"), IGNORE_TABLE)
def test_ignore_rules_follow_gitignore_semantics(lines, path, is_dir, expected):
    assert IgnoreRules(lines).ignored(path, is_dir) is expected


def test_the_walk_honours_amlignore_over_gitignore_and_skips_git_and_caches(tmp_path):
    root = write(
        tmp_path / "src",
        {
            "train.py": "x",
            "data/big.csv": "1,2",
            "data/keep.csv": "3,4",
            "notes.md": "n",
            ".git/HEAD": "ref",
            "pkg/__pycache__/m.pyc": "c",
            "pkg/m.py": "m",
            ".amlignore": "data/*\n!data/keep.csv\n*.md\n",
            ".gitignore": "*.py\n",
        },
    )
    os.symlink(root / "train.py", root / "link.py")
    manifest = build_manifest(root)
    assert sorted(manifest.files) == [
        ".amlignore",
        ".gitignore",
        "data/keep.csv",
        "pkg/m.py",
        "train.py",
    ]
    assert manifest.ignore_file == ".amlignore"
    assert manifest.ignored == ["data/big.csv", "notes.md"]
    (root / ".amlignore").unlink()
    assert sorted(build_manifest(root).files) == [
        ".gitignore",
        "data/big.csv",
        "data/keep.csv",
        "notes.md",
    ]


def test_the_manifest_and_digest_match_the_servers(tmp_path):
    from pipelines.snapshots import manifest_digest, manifest_of_directory

    root = write(tmp_path / "src", {"a.py": "a", "sub/b.sh": "#!/bin/sh\n", "empty": ""})
    (root / "sub/b.sh").chmod(0o755)
    manifest = build_manifest(root)
    assert manifest.files == manifest_of_directory(root)
    assert manifest.digest == manifest_digest(manifest_of_directory(root))


def test_an_unchanged_file_is_not_read_again(tmp_path, monkeypatch):
    root = write(tmp_path / "src", {"a.py": "a", "b.py": "b"})
    build_manifest(root)
    opened: list[str] = []
    real_open = open

    def counting_open(path: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(os.path.basename(str(path)))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(snapshot_module, "open", counting_open, raising=False)
    build_manifest(root)
    assert opened == []
    (root / "b.py").write_text("changed")
    build_manifest(root)
    assert opened == ["b.py"]


def test_a_snapshot_over_the_limit_names_its_five_biggest_files(tmp_path, monkeypatch):
    sizes = {f"f{i}.bin": 100_000 * (i + 1) for i in range(7)}
    root = write(tmp_path / "src", {name: b"x" * size for name, size in sizes.items()})
    monkeypatch.setenv("MILLRACE_SNAPSHOT_LIMIT_MB", "1")
    with pytest.raises(ValidationError) as caught:
        build_manifest(root)
    message = caught.value.detail
    assert "more than the 1.0 MB a snapshot may hold (MILLRACE_SNAPSHOT_LIMIT_MB)" in message
    assert "The biggest: f6.bin (683.6 KB), f5.bin (585.9 KB), f4.bin" in message
    assert "f2.bin (292.97" not in message and "f1.bin" not in message
    assert ".amlignore" in message
    monkeypatch.setenv("MILLRACE_SNAPSHOT_LIMIT_MB", "lots")
    with pytest.raises(ConfigurationError, match="MILLRACE_SNAPSHOT_LIMIT_MB must be a positive"):
        build_manifest(root)


def test_the_upload_sends_only_missing_files_in_batches_and_nothing_when_unchanged(
    tmp_path, monkeypatch
):
    root = write(tmp_path / "src", {"a.py": "same", "b.py": "same", "c.py": "ccc", "d.py": "dd"})
    client = FakeClient()
    server = SnapshotServer(client)
    ws = FakeWorkspace(client)
    manifest = build_manifest(root)
    have = hashlib.sha256(b"dd").hexdigest()
    server.blobs[have] = b"dd"
    for content in (b"same", b"ccc"):
        server.expect_blob(hashlib.sha256(content).hexdigest())
    monkeypatch.setattr(snapshot_module, "MISSING_BATCH", 2)
    digest, sent = upload_snapshot(ws, manifest, show_progress=False)  # type: ignore[arg-type]
    assert (digest, sent) == (manifest.digest, len(b"same") + len(b"ccc"))
    assert len(client.paths("PUT")) == 2  # "same" once, "d.py" already there
    assert len([p for p in client.paths("POST") if p.endswith("missing/")]) == 2  # 3 hashes / 2
    assert server.snapshots[digest] == manifest.files
    client.calls.clear()
    assert upload_snapshot(ws, build_manifest(root), show_progress=False) == (digest, 0)  # type: ignore[arg-type]
    assert client.calls == [("GET", f"{API}snapshots/{digest}/", None)]


def test_submission_uploads_each_source_directory_once_and_returns_the_run_body(tmp_path, project):
    other = write(tmp_path / "other", {"score.py": "pass\n"})
    client = FakeClient()
    server = SnapshotServer(client)
    ws = FakeWorkspace(client)
    for folder in (project, other):
        for path in folder.iterdir():
            server.expect_blob(hashlib.sha256(path.read_bytes()).hexdigest())
    steps = [
        PythonScriptStep("train.py", source_directory=project),
        PythonScriptStep("extract.py", source_directory=project),
        PythonScriptStep("score.py", source_directory=other),
    ]
    pipeline = Pipeline(ws, steps, description="nightly")  # type: ignore[arg-type]
    submission = pipeline._submission(show_progress=False)
    assert submission == {
        "graph": pipeline._graph(),
        "pipeline_name": None,
        "description": "nightly",
    }
    assert len([p for p in client.paths("POST") if p == f"{API}snapshots/"]) == 2
    # The server checks the graph (with the parameters) before a single file goes up.
    assert client.paths("POST")[0] == f"{API}pipelines/validate/"
    assert set(server.snapshots) == {s["snapshot"] for s in submission["graph"]["steps"]}


def test_default_source_directory_else_the_folder_current_at_step_creation(
    ws, project, tmp_path, monkeypatch
):
    monkeypatch.chdir(project)
    here = PythonScriptStep("train.py")
    monkeypatch.chdir(tmp_path)
    other = write(tmp_path / "default", {"x.py": ""})
    elsewhere = PythonScriptStep("x.py")
    with_default = Pipeline(ws, [elsewhere], default_source_directory=other)
    assert with_default._graph()["steps"][0]["snapshot"] == build_manifest(other).digest
    without = Pipeline(ws, [here])
    assert without._graph()["steps"][0]["snapshot"] == build_manifest(project).digest
    # The default applies to every step without its own folder: train.py is not in it.
    both = Pipeline(ws, [here, elsewhere], default_source_directory=other)
    with pytest.raises(ValidationError, match=r"script 'train\.py' does not exist in the source"):
        both._graph()


# ----- validate ----------------------------------------------------------------------------


def test_validate_lists_every_problem_at_once_with_the_servers(ws, project, capsys):
    produced = PipelineData("model")
    orphan = PipelineData("orphan")
    config = RunConfiguration()
    config.environment.python.conda_dependencies.add_conda_package("r-base")
    first = PythonScriptStep(
        "train.py", name="same", outputs=[produced], compute_target="nope", source_directory=project
    )
    second = PythonScriptStep(
        "missing.py",
        name="same",
        arguments=["--bad", {"a": 1}, "--orphan", orphan],
        outputs=[produced],
        runconfig=config,
        source_directory=project,
    )
    loop_a = PythonScriptStep("train.py", name="loop_a", source_directory=project)
    loop_b = PythonScriptStep("train.py", name="loop_b", source_directory=project)
    loop_a.run_after(loop_b)
    loop_b.run_after(loop_a)
    answer = ValidationError(
        "The pipeline has 2 problem(s).",
        fields={
            "steps[0] (same).compute_target": ["unknown compute target 'nope' (there are: local)."],
            "steps[1] (same).name": ["two steps are named 'same'; step names must be unique."],
        },
    )
    ws._client.answers[("POST", f"{API}pipelines/validate/")] = answer
    problems = Pipeline(ws, [first, second, loop_a, loop_b]).validate()
    joined = "\n".join(problems)
    expected = [
        "step 'same' (missing.py): script 'missing.py' does not exist in the source directory",
        "step 'same' (missing.py): arguments[1]: dict {'a': 1} cannot be an argument",
        "conda package 'r-base' is not supported",
        "consumes PipelineData 'orphan', which is never produced",
        "2 steps are named 'same'; step names must be unique.",
        "data 'model': produced by more than one step ('same', 'same')",
        "the steps wait for each other in a cycle: loop_b → loop_a → loop_b.",
        # From the server, which knows the compute targets:
        "steps[0] (same).compute_target: unknown compute target 'nope'",
    ]
    for text in expected:
        assert text in joined
    # The server's duplicate-name report is left out: the SDK already said it.
    assert "two steps are named" not in joined
    assert len(problems) == len(expected)
    printed = capsys.readouterr().out
    assert f"The pipeline has {len(expected)} problem(s):" in printed
    method, path, body = ws._client.calls[-1]
    assert (method, path) == ("POST", f"{API}pipelines/validate/")
    assert body["snapshots"] == {
        build_manifest(project).digest: sorted(build_manifest(project).files)
    }


def test_validate_of_a_good_pipeline_asks_the_server_and_reports_nothing(ws, project, capsys):
    ws._client.answers[("POST", f"{API}pipelines/validate/")] = {"valid": True, "steps": 3}
    assert seed_pipeline(ws, project).validate() == []
    assert "The pipeline is valid (3 steps)." in capsys.readouterr().out


def test_an_amlignored_script_is_reported_as_left_out(ws, project):
    write(project, {".amlignore": "compare.py\n"})
    step = PythonScriptStep("compare.py", source_directory=project)
    with pytest.raises(ValidationError, match=r"is left out of the snapshot by \.amlignore"):
        Pipeline(ws, [step])._graph()


# ----- submit and publish ------------------------------------------------------------------


def test_submit_hands_the_pipeline_to_experiment_submit(ws, project, monkeypatch):
    seen: list[tuple[str, Any, dict[str, Any]]] = []

    class RecordingExperiment:
        def __init__(self, workspace: Any, name: str) -> None:
            self.name = name

        def submit(self, config: Any, **kwargs: Any) -> str:
            seen.append((self.name, config, kwargs))
            return "run"

    monkeypatch.setattr(experiment_module, "Experiment", RecordingExperiment)
    pipeline = seed_pipeline(ws, project)
    assert pipeline.submit("Compare_Models_Exp", regenerate_outputs=True, tags={"k": "v"}) == "run"
    assert seen == [
        (
            "Compare_Models_Exp",
            pipeline,
            {
                "pipeline_parameters": None,
                "continue_on_step_failure": False,
                "regenerate_outputs": True,
                "tags": {"k": "v"},
            },
        )
    ]
    with pytest.raises(NotImplementedError, match=r"Pipeline\.publish"):
        pipeline.publish(name="My_Published_Pipeline")


# ----- compute targets ---------------------------------------------------------------------


def compute_client() -> FakeClient:
    targets = {
        "local": {"name": "local", "kind": "local", "queue": "local", "max_concurrency": 4},
        "aml-compute": {
            "name": "aml-compute",
            "kind": "docker",
            "queue": "docker",
            "max_concurrency": 4,
            "min_nodes": 1,
            "vm_size": "STANDARD_NC6",
            "created_at": "2026-01-01T00:00:00Z",
        },
    }
    answers: dict[tuple[str, str], Any] = {
        ("GET", f"{API}compute/{name}/"): data for name, data in targets.items()
    }
    answers[("GET", f"{API}compute/")] = list(targets.values())
    return FakeClient(answers)


def test_the_seed_documents_compute_flow(capsys):
    client = compute_client()
    ws = FakeWorkspace(client)
    compute_name = "aml-compute"
    assert compute_name in ws_compute_targets(ws)
    compute_target = ws_compute_targets(ws)[compute_name]
    assert type(compute_target) is AmlCompute
    assert type(ws_compute_targets(ws)["local"]) is ComputeTarget
    assert ws_compute_targets(ws)["local"].type == "local"
    created = {"name": "cpu", "kind": "docker", "queue": "docker", "max_concurrency": 3}
    client.answers[("POST", f"{API}compute/")] = created
    config = AmlCompute.provisioning_configuration(
        vm_size="STANDARD_D2_V2", min_nodes=1, max_nodes=3
    )
    target = ComputeTarget.create(ws, "cpu", config)  # type: ignore[arg-type]
    assert client.calls[-1][2] == {
        "name": "cpu",
        "kind": "docker",
        "max_concurrency": 3,
        "min_nodes": 1,
        "vm_size": "STANDARD_D2_V2",
    }
    assert type(target) is AmlCompute and target.type == "AmlCompute"
    client.answers[("GET", f"{API}compute/cpu/")] = created
    target.wait_for_completion(show_output=True, min_node_count=None, timeout_in_minutes=20)
    assert "Succeeded: compute target 'cpu' is ready (docker, up to 3 steps at once)." in (
        capsys.readouterr().out
    )
    status = AmlCompute(ws, compute_name).get_status()  # type: ignore[arg-type]
    assert status.provisioning_state == "Succeeded"
    assert status.serialize()["scaleSettings"] == {"minNodeCount": 1, "maxNodeCount": 4}
    assert status.serialize()["vmSize"] == "STANDARD_NC6"


def ws_compute_targets(ws: FakeWorkspace) -> dict[str, ComputeTarget]:
    """``Workspace.compute_targets`` read on the fake workspace."""
    from pipelines.sdk.workspace import Workspace

    getter: Any = vars(Workspace)["compute_targets"]
    return dict(getter.fget(ws))


def test_a_missing_or_wrong_kind_target_raises_compute_target_exception():
    ws = FakeWorkspace(compute_client())
    with pytest.raises(
        ComputeTargetException, match=r"'nope' was not found.*has: aml-compute, local"
    ):
        AmlCompute(ws, "nope")  # type: ignore[arg-type]
    with pytest.raises(ComputeTargetException, match="is a 'local' target, not an AmlCompute"):
        AmlCompute(ws, "local")  # type: ignore[arg-type]
    assert ComputeTarget(ws, "local").name == "local"  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="min_nodes must be between 0 and max_nodes"):
        AmlCompute.provisioning_configuration(min_nodes=5, max_nodes=2)
    with pytest.raises(TypeError, match="provisioning_configuration"):
        ComputeTarget.create(ws, "x", {"vm_size": "big"})  # type: ignore[arg-type]


def test_a_mode_asked_for_in_inputs_wins_over_the_plain_argument(tmp_path: Path) -> None:
    source = write(tmp_path / "src", {"a.py": "pass\n"})
    ws = FakeWorkspace(FakeClient())
    data = PipelineData("d")
    produce = PythonScriptStep(
        "a.py", name="p", arguments=["--o", data], outputs=[data], source_directory=source
    )
    consume = PythonScriptStep(
        "a.py",
        name="c",
        arguments=["--i", data],
        inputs=[data.as_download()],
        source_directory=source,
    )
    graph = Pipeline(ws, [produce, consume])._graph()  # type: ignore[arg-type]
    assert graph["steps"][1]["inputs"] == {"d": {"pipeline_data": "d", "mode": "download"}}
