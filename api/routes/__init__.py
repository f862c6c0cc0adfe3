"""One router per resource: tasks, runs, events, schedules, tools, agents, audit, health."""
