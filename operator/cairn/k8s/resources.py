"""Cairn's kinds as lightkube resources."""

from __future__ import annotations

from lightkube.generic_resource import create_namespaced_resource

from cairn.api.common import GROUP, VERSION

TaskRunResource = create_namespaced_resource(GROUP, VERSION, "TaskRun", "taskruns")
TaskResource = create_namespaced_resource(GROUP, VERSION, "Task", "tasks")
QueueResource = create_namespaced_resource(GROUP, VERSION, "Queue", "queues")
ScheduleResource = create_namespaced_resource(GROUP, VERSION, "Schedule", "schedules")
TokenCompletionResource = create_namespaced_resource(GROUP, VERSION, "TokenCompletion", "tokencompletions")
