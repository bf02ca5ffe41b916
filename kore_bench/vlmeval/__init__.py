"""VLMEvalKit-compatible retention benchmarks: answer extraction, scoring, data and the suite hook.

Inference and scoring are separate (VLMEvalKit's design): :func:`score_table` scores any prediction
table (the benchmark TSV plus ``prediction``), whether it came from a kore-bench run or from
VLMEvalKit itself (``kore-bench score BENCHMARK PREDICTIONS``). The benchmarks VLMEvalKit scores
with an LLM judge, and its judge fallback for multiple choice and yes/no, need ``--judge`` (:mod:`.judge`).
"""
from .benchmarks import BENCHMARKS, Benchmark, get_benchmark, headline, load_samples, read_table, score_table
from .extract import extract_option, extract_yes_no, process_punctuation
from .judge import Judge, NotScored, parse_judge
from .task import LOADER, evaluate, is_vlmeval, load_source, score_report

__all__ = ["BENCHMARKS", "Benchmark", "LOADER", "evaluate", "extract_option", "extract_yes_no", "get_benchmark",
           "headline", "is_vlmeval", "Judge", "load_samples", "load_source", "NotScored", "parse_judge",
           "process_punctuation", "read_table", "score_report", "score_table"]
