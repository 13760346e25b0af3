"""lmvisor.optimizers: Evaluate and the teleprompters (LabeledFewShot, BootstrapFewShot,
random search, COPRO, MIPROv2), over an executor seam and a resumable step journal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmvisor._lazy import lazy_exports

if TYPE_CHECKING:
    from lmvisor.optimizers.bootstrap import (
        BootstrapFewShot,
        Bootstrapped,
    )
    from lmvisor.optimizers.copro import (
        COPRO,
        BasicGenerateInstruction,
        GenerateInstructionGivenAttempts,
    )
    from lmvisor.optimizers.errors import (
        MetricError,
        OptimizerError,
        OptimizerSettingsError,
        TooManyErrors,
    )
    from lmvisor.optimizers.evaluate import (
        Evaluate,
        EvaluationResult,
        EvaluationRow,
        RowError,
        example_inputs,
    )
    from lmvisor.optimizers.evaluate_report import (
        ProgressDisplay,
        print_table,
        result_records,
        save_records,
    )
    from lmvisor.optimizers.executor import (
        Executor,
        ExecutorStatistics,
        LocalExecutor,
    )
    from lmvisor.optimizers.labeled_few_shot import (
        LabeledFewShot,
        label_demos,
    )
    from lmvisor.optimizers.metric import (
        Metric,
        call_metric,
        load_metric,
        metric_name,
        metric_score,
    )
    from lmvisor.optimizers.mipro import (
        AUTO_RUN_SETTINGS,
        MIPROv2,
    )
    from lmvisor.optimizers.mipro_search import (
        SearchOutcome,
        SearchSpace,
        create_minibatch,
        import_optuna,
        planned_trials,
        search,
    )
    from lmvisor.optimizers.proposer import (
        TIPS,
        DatasetDescriptor,
        DatasetDescriptorWithPriorObservations,
        DescribeModule,
        DescribeProgram,
        ObservationSummarizer,
        ProposalPlan,
        dspy_repr,
        example_string,
        instruction_signature,
        program_code,
        strip_prefix,
    )
    from lmvisor.optimizers.random_search import (
        BootstrapFewShotWithRandomSearch,
    )
    from lmvisor.optimizers.run import (
        Checkpoint,
        MemoryCheckpoint,
        OptimizationRun,
        RunProgress,
        TrialReport,
    )
    from lmvisor.optimizers.teleprompter import (
        Scored,
        Teleprompter,
        as_examples,
        demo_dicts,
        demos_from,
        scored_trial,
    )

__all__ = [
    "AUTO_RUN_SETTINGS",
    "COPRO",
    "TIPS",
    "BasicGenerateInstruction",
    "BootstrapFewShot",
    "BootstrapFewShotWithRandomSearch",
    "Bootstrapped",
    "Checkpoint",
    "DatasetDescriptor",
    "DatasetDescriptorWithPriorObservations",
    "DescribeModule",
    "DescribeProgram",
    "Evaluate",
    "EvaluationResult",
    "EvaluationRow",
    "Executor",
    "ExecutorStatistics",
    "GenerateInstructionGivenAttempts",
    "LabeledFewShot",
    "LocalExecutor",
    "MIPROv2",
    "MemoryCheckpoint",
    "Metric",
    "MetricError",
    "ObservationSummarizer",
    "OptimizationRun",
    "OptimizerError",
    "OptimizerSettingsError",
    "ProgressDisplay",
    "ProposalPlan",
    "RowError",
    "RunProgress",
    "Scored",
    "SearchOutcome",
    "SearchSpace",
    "Teleprompter",
    "TooManyErrors",
    "TrialReport",
    "as_examples",
    "call_metric",
    "create_minibatch",
    "demo_dicts",
    "demos_from",
    "dspy_repr",
    "example_inputs",
    "example_string",
    "import_optuna",
    "instruction_signature",
    "label_demos",
    "load_metric",
    "metric_name",
    "metric_score",
    "planned_trials",
    "print_table",
    "program_code",
    "result_records",
    "save_records",
    "scored_trial",
    "search",
    "strip_prefix",
]

_EXPORTS = {
    "AUTO_RUN_SETTINGS": "lmvisor.optimizers.mipro",
    "BasicGenerateInstruction": "lmvisor.optimizers.copro",
    "BootstrapFewShot": "lmvisor.optimizers.bootstrap",
    "BootstrapFewShotWithRandomSearch": "lmvisor.optimizers.random_search",
    "Bootstrapped": "lmvisor.optimizers.bootstrap",
    "COPRO": "lmvisor.optimizers.copro",
    "Checkpoint": "lmvisor.optimizers.run",
    "DatasetDescriptor": "lmvisor.optimizers.proposer",
    "DatasetDescriptorWithPriorObservations": "lmvisor.optimizers.proposer",
    "DescribeModule": "lmvisor.optimizers.proposer",
    "DescribeProgram": "lmvisor.optimizers.proposer",
    "Evaluate": "lmvisor.optimizers.evaluate",
    "EvaluationResult": "lmvisor.optimizers.evaluate",
    "EvaluationRow": "lmvisor.optimizers.evaluate",
    "Executor": "lmvisor.optimizers.executor",
    "ExecutorStatistics": "lmvisor.optimizers.executor",
    "GenerateInstructionGivenAttempts": "lmvisor.optimizers.copro",
    "LabeledFewShot": "lmvisor.optimizers.labeled_few_shot",
    "LocalExecutor": "lmvisor.optimizers.executor",
    "MIPROv2": "lmvisor.optimizers.mipro",
    "MemoryCheckpoint": "lmvisor.optimizers.run",
    "Metric": "lmvisor.optimizers.metric",
    "MetricError": "lmvisor.optimizers.errors",
    "ObservationSummarizer": "lmvisor.optimizers.proposer",
    "OptimizationRun": "lmvisor.optimizers.run",
    "OptimizerError": "lmvisor.optimizers.errors",
    "OptimizerSettingsError": "lmvisor.optimizers.errors",
    "ProgressDisplay": "lmvisor.optimizers.evaluate_report",
    "ProposalPlan": "lmvisor.optimizers.proposer",
    "RowError": "lmvisor.optimizers.evaluate",
    "RunProgress": "lmvisor.optimizers.run",
    "Scored": "lmvisor.optimizers.teleprompter",
    "SearchOutcome": "lmvisor.optimizers.mipro_search",
    "SearchSpace": "lmvisor.optimizers.mipro_search",
    "TIPS": "lmvisor.optimizers.proposer",
    "Teleprompter": "lmvisor.optimizers.teleprompter",
    "TooManyErrors": "lmvisor.optimizers.errors",
    "TrialReport": "lmvisor.optimizers.run",
    "as_examples": "lmvisor.optimizers.teleprompter",
    "call_metric": "lmvisor.optimizers.metric",
    "create_minibatch": "lmvisor.optimizers.mipro_search",
    "demo_dicts": "lmvisor.optimizers.teleprompter",
    "demos_from": "lmvisor.optimizers.teleprompter",
    "dspy_repr": "lmvisor.optimizers.proposer",
    "example_inputs": "lmvisor.optimizers.evaluate",
    "example_string": "lmvisor.optimizers.proposer",
    "import_optuna": "lmvisor.optimizers.mipro_search",
    "instruction_signature": "lmvisor.optimizers.proposer",
    "label_demos": "lmvisor.optimizers.labeled_few_shot",
    "load_metric": "lmvisor.optimizers.metric",
    "metric_name": "lmvisor.optimizers.metric",
    "metric_score": "lmvisor.optimizers.metric",
    "planned_trials": "lmvisor.optimizers.mipro_search",
    "print_table": "lmvisor.optimizers.evaluate_report",
    "program_code": "lmvisor.optimizers.proposer",
    "result_records": "lmvisor.optimizers.evaluate_report",
    "save_records": "lmvisor.optimizers.evaluate_report",
    "scored_trial": "lmvisor.optimizers.teleprompter",
    "search": "lmvisor.optimizers.mipro_search",
    "strip_prefix": "lmvisor.optimizers.proposer",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
