"""An import-linter contract that import-linter lacks: an allowlist of external packages. The
Python models run in the NGC image's Python backend stub, which has the standard library, numpy
and triton_python_backend_utils and nothing else; a `forbidden` contract would have to name
every other package there is."""

from __future__ import annotations

import sys

from grimp import ImportGraph
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck

# Names that only type checkers import (under TYPE_CHECKING), never the running model.
_TYPING_ONLY = frozenset({"_typeshed", "typing_extensions"})


class ExternalAllowlistContract(Contract):
    """The `source_modules` (and what is inside them) import nothing from outside the project
    but the standard library and `allowed_modules`."""

    type_name = "external_allowlist"

    source_modules = fields.ListField(subfield=fields.ModuleField())
    allowed_modules = fields.ListField(subfield=fields.StringField())

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        allowed = set(self.allowed_modules) | set(sys.stdlib_module_names) | _TYPING_ONLY
        sources = [source.name for source in self.source_modules]  # type: ignore[attr-defined]
        found = []
        for source in sources:
            for module in sorted({source} | graph.find_descendants(source)):
                for imported in sorted(graph.find_modules_directly_imported_by(module)):
                    top = imported.split(".")[0]
                    if top in sources or not graph.is_module_squashed(imported):
                        continue
                    if top not in allowed:
                        found.append((module, imported))
        return ContractCheck(kept=not found, metadata={"found": found})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for module, imported in check.metadata["found"]:
            output.print_error(f"{module} imports {imported}, which is not allowed.")
            output.new_line()
