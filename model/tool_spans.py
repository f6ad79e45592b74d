"""Tool calls as MLflow traces: one trace with one TOOL span per call, linked to a run.

Pass an instance as a ToolLoop's `on_call`. MLflow is optional in `model/`: it is imported only when an
instance is made, which fails with the fix when MLflow is not installed.
"""

from __future__ import annotations

import time

from fineforge.model.tool_loop import ToolCall

SOURCE_RUN = "mlflow.sourceRun"  # the trace metadata key MLflow links a trace to its run by


class MlflowToolSpans:
    """Records each call (name, input, output, seconds, error, truncation) in the tracking store of
    MLFLOW_TRACKING_URI; traces go to `experiment_id` (default: the active experiment) and name `run_id`
    (default: the active run, if any)."""

    def __init__(self, run_id: str | None = None, experiment_id: str | None = None) -> None:
        try:
            import mlflow
        except ImportError as exc:
            raise RuntimeError("recording tool calls as traces needs mlflow: pip install mlflow") from exc
        self.mlflow = mlflow
        active = mlflow.active_run()
        self.run_id = run_id or (active.info.run_id if active else None)
        self.experiment_id = experiment_id or (active.info.experiment_id if active else None)

    def __call__(self, call: ToolCall) -> None:
        from mlflow.entities import SpanType

        end = time.time_ns()
        span = self.mlflow.start_span_no_context(
            f"tool:{call.name}",
            span_type=SpanType.TOOL,
            inputs={"input": call.input},
            attributes={"tool": call.name, "seconds": call.seconds, "error": call.error, "truncated": call.truncated},
            metadata={SOURCE_RUN: self.run_id} if self.run_id else None,
            experiment_id=self.experiment_id,
            start_time_ns=end - int(call.seconds * 1e9),
        )
        span.end(outputs={"output": call.output}, status="ERROR" if call.error else "OK", end_time_ns=end)
