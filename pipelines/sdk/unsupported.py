"""azureml classes that Millrace does not offer yet: published pipelines, pipeline endpoints and
schedules.

The classes exist so that a v1 script's imports work; every constructor and every call raises
NotImplementedError naming exactly the call and saying what to do instead.
"""

from __future__ import annotations

from typing import Any, NoReturn

__all__ = ["PipelineEndpoint", "PublishedPipeline", "Schedule", "ScheduleRecurrence"]

_INSTEAD = "submit the Pipeline with Experiment.submit."


def _message(call: str) -> str:
    return f"{call} is not offered by Millrace yet: {_INSTEAD}"


def _raises(call: str) -> Any:
    """A class attribute that raises NotImplementedError naming ``call`` whether it is called
    on the class (``PublishedPipeline.get(ws, id)``) or on an instance."""

    def unsupported(*args: Any, **kwargs: Any) -> NoReturn:
        raise NotImplementedError(_message(call))

    unsupported.__name__ = call.rsplit(".", 1)[-1]
    unsupported.__qualname__ = call
    unsupported.__doc__ = f"Not offered yet: raises NotImplementedError ({_INSTEAD})"
    return staticmethod(unsupported)


class _Unsupported:
    """Base of the classes below: constructing one raises, naming the class."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError(_message(f"{type(self).__name__}(...)"))


class PublishedPipeline(_Unsupported):
    """Not offered yet (azureml's ``PublishedPipeline``): every call raises
    NotImplementedError. Submit the Pipeline with ``Experiment.submit`` instead."""

    get = _raises("PublishedPipeline.get")
    list = _raises("PublishedPipeline.list")
    create = _raises("PublishedPipeline.create")
    get_all = _raises("PublishedPipeline.get_all")
    submit = _raises("PublishedPipeline.submit")
    enable = _raises("PublishedPipeline.enable")
    disable = _raises("PublishedPipeline.disable")
    save = _raises("PublishedPipeline.save")
    get_graph = _raises("PublishedPipeline.get_graph")
    get_step_names = _raises("PublishedPipeline.get_step_names")


class PipelineEndpoint(_Unsupported):
    """Not offered yet (azureml's ``PipelineEndpoint``): every call raises
    NotImplementedError. Submit the Pipeline with ``Experiment.submit`` instead."""

    publish = _raises("PipelineEndpoint.publish")
    get = _raises("PipelineEndpoint.get")
    list = _raises("PipelineEndpoint.list")
    submit = _raises("PipelineEndpoint.submit")
    add = _raises("PipelineEndpoint.add")
    add_default = _raises("PipelineEndpoint.add_default")
    set_default = _raises("PipelineEndpoint.set_default")
    set_default_version = _raises("PipelineEndpoint.set_default_version")
    get_default_version = _raises("PipelineEndpoint.get_default_version")
    get_pipeline = _raises("PipelineEndpoint.get_pipeline")
    list_versions = _raises("PipelineEndpoint.list_versions")
    list_pipelines = _raises("PipelineEndpoint.list_pipelines")
    enable = _raises("PipelineEndpoint.enable")
    disable = _raises("PipelineEndpoint.disable")
    archive = _raises("PipelineEndpoint.archive")
    reactivate = _raises("PipelineEndpoint.reactivate")
    set_name = _raises("PipelineEndpoint.set_name")


class Schedule(_Unsupported):
    """Not offered yet (azureml's ``Schedule``): every call raises NotImplementedError.
    Submit the Pipeline with ``Experiment.submit`` instead."""

    create = _raises("Schedule.create")
    create_for_pipeline_endpoint = _raises("Schedule.create_for_pipeline_endpoint")
    get = _raises("Schedule.get")
    list = _raises("Schedule.list")
    get_all = _raises("Schedule.get_all")
    get_schedules_for_pipeline_id = _raises("Schedule.get_schedules_for_pipeline_id")
    get_schedules_for_pipeline_endpoint_id = _raises(
        "Schedule.get_schedules_for_pipeline_endpoint_id"
    )
    load_yaml = _raises("Schedule.load_yaml")
    update = _raises("Schedule.update")
    enable = _raises("Schedule.enable")
    disable = _raises("Schedule.disable")
    get_last_pipeline_run = _raises("Schedule.get_last_pipeline_run")
    get_pipeline_runs = _raises("Schedule.get_pipeline_runs")


class ScheduleRecurrence(_Unsupported):
    """Not offered yet (azureml's ``ScheduleRecurrence``): constructing one raises
    NotImplementedError. Submit the Pipeline with ``Experiment.submit`` instead."""

    validate = _raises("ScheduleRecurrence.validate")
