"""lmvisor.optimizers: Evaluate and the teleprompters (LabeledFewShot, BootstrapFewShot,
random search, COPRO, MIPROv2), over an executor seam and a resumable step journal.
"""

from typing import TYPE_CHECKING

from lmvisor._lazy import lazy_package

if TYPE_CHECKING:
    from lmvisor.optimizers.bootstrap import BootstrapFewShot as BootstrapFewShot
    from lmvisor.optimizers.bootstrap import Bootstrapped as Bootstrapped
    from lmvisor.optimizers.copro import COPRO as COPRO
    from lmvisor.optimizers.copro import BasicGenerateInstruction as BasicGenerateInstruction
    from lmvisor.optimizers.copro import (
        GenerateInstructionGivenAttempts as GenerateInstructionGivenAttempts,
    )
    from lmvisor.optimizers.errors import CheckpointError as CheckpointError
    from lmvisor.optimizers.errors import MetricError as MetricError
    from lmvisor.optimizers.errors import OptimizerError as OptimizerError
    from lmvisor.optimizers.errors import OptimizerSettingsError as OptimizerSettingsError
    from lmvisor.optimizers.errors import TooManyErrors as TooManyErrors
    from lmvisor.optimizers.evaluate import Evaluate as Evaluate
    from lmvisor.optimizers.evaluate import EvaluationResult as EvaluationResult
    from lmvisor.optimizers.evaluate import EvaluationRow as EvaluationRow
    from lmvisor.optimizers.evaluate import RowError as RowError
    from lmvisor.optimizers.evaluate import example_inputs as example_inputs
    from lmvisor.optimizers.evaluate_report import ProgressDisplay as ProgressDisplay
    from lmvisor.optimizers.evaluate_report import print_table as print_table
    from lmvisor.optimizers.evaluate_report import result_records as result_records
    from lmvisor.optimizers.evaluate_report import save_records as save_records
    from lmvisor.optimizers.executor import Executor as Executor
    from lmvisor.optimizers.executor import ExecutorStatistics as ExecutorStatistics
    from lmvisor.optimizers.executor import LocalExecutor as LocalExecutor
    from lmvisor.optimizers.labeled_few_shot import LabeledFewShot as LabeledFewShot
    from lmvisor.optimizers.labeled_few_shot import label_demos as label_demos
    from lmvisor.optimizers.metric import Metric as Metric
    from lmvisor.optimizers.metric import call_metric as call_metric
    from lmvisor.optimizers.metric import load_metric as load_metric
    from lmvisor.optimizers.metric import metric_caller as metric_caller
    from lmvisor.optimizers.metric import metric_name as metric_name
    from lmvisor.optimizers.metric import metric_score as metric_score
    from lmvisor.optimizers.mipro import AUTO_RUN_SETTINGS as AUTO_RUN_SETTINGS
    from lmvisor.optimizers.mipro import MIPROv2 as MIPROv2
    from lmvisor.optimizers.mipro_search import SearchOutcome as SearchOutcome
    from lmvisor.optimizers.mipro_search import SearchSpace as SearchSpace
    from lmvisor.optimizers.mipro_search import create_minibatch as create_minibatch
    from lmvisor.optimizers.mipro_search import import_optuna as import_optuna
    from lmvisor.optimizers.mipro_search import planned_trials as planned_trials
    from lmvisor.optimizers.mipro_search import search as search
    from lmvisor.optimizers.proposer import TIPS as TIPS
    from lmvisor.optimizers.proposer import DatasetDescriptor as DatasetDescriptor
    from lmvisor.optimizers.proposer import (
        DatasetDescriptorWithPriorObservations as DatasetDescriptorWithPriorObservations,
    )
    from lmvisor.optimizers.proposer import DescribeModule as DescribeModule
    from lmvisor.optimizers.proposer import DescribeProgram as DescribeProgram
    from lmvisor.optimizers.proposer import ObservationSummarizer as ObservationSummarizer
    from lmvisor.optimizers.proposer import ProposalPlan as ProposalPlan
    from lmvisor.optimizers.proposer import dspy_repr as dspy_repr
    from lmvisor.optimizers.proposer import example_string as example_string
    from lmvisor.optimizers.proposer import instruction_signature as instruction_signature
    from lmvisor.optimizers.proposer import program_code as program_code
    from lmvisor.optimizers.proposer import strip_prefix as strip_prefix
    from lmvisor.optimizers.random_search import (
        BootstrapFewShotWithRandomSearch as BootstrapFewShotWithRandomSearch,
    )
    from lmvisor.optimizers.run import Checkpoint as Checkpoint
    from lmvisor.optimizers.run import MemoryCheckpoint as MemoryCheckpoint
    from lmvisor.optimizers.run import OptimizationRun as OptimizationRun
    from lmvisor.optimizers.run import RunProgress as RunProgress
    from lmvisor.optimizers.run import TrialReport as TrialReport
    from lmvisor.optimizers.teleprompter import Scored as Scored
    from lmvisor.optimizers.teleprompter import Teleprompter as Teleprompter
    from lmvisor.optimizers.teleprompter import as_examples as as_examples
    from lmvisor.optimizers.teleprompter import demo_dicts as demo_dicts
    from lmvisor.optimizers.teleprompter import demos_from as demos_from
    from lmvisor.optimizers.teleprompter import scored_trial as scored_trial
else:
    __all__, __getattr__, __dir__ = lazy_package(__name__, __file__)
