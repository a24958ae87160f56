"""Results: JSON Lines files (:mod:`.files`), their metadata (:mod:`.metadata`), the
nccl-tests-style tables (:mod:`.table`) and the reports that re-read them (:mod:`.report`,
:mod:`.sweep_report`)."""

from .files import SCHEMA_VERSION, ResultsFile, ResultsWriter, Row, expand_paths, read_results

__all__ = ["SCHEMA_VERSION", "ResultsFile", "ResultsWriter", "Row", "expand_paths", "read_results"]
