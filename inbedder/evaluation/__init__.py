"""Instruction-awareness, measured: two-facet clustering, robustness to paraphrase, STS-B, taxonomy transfer.

`harness` scores one embedder; `baselines` are all-MiniLM-L6-v2 plain and with
the question prepended; `compare` runs several side by side and checks a
trained model against an earlier run.
"""

from inbedder.evaluation.compare import EvaluationSetupError, acceptance, earlier_names, load_before, run_evaluation
from inbedder.evaluation.harness import EvalOptions, InBedderUnderTest, evaluate, to_markdown, write_results

__all__ = ["EvalOptions", "EvaluationSetupError", "InBedderUnderTest", "acceptance", "earlier_names", "evaluate",
           "load_before", "run_evaluation", "to_markdown", "write_results"]
