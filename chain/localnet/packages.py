"""Move package metadata of the packages the stand-in publishes, for `MovePackageService`.

A Sui full node answers GetPackage, GetDatatype and GetFunction from the package's bytecode
(sui `crates/sui-rpc-api/src/grpc/v2/move_package_service/`: `get_function.rs`,
`get_datatype.rs`, `get_package.rs`, `conversions.rs`). The stand-in parses the signatures
transcribed in `chain.localnet.package_sources` into the same descriptors, once per
deployment (the package addresses are the deployment's), and answers the lookups from them.
Type names are rendered as the node renders them: full-length addresses
(`to_canonical_string(true)`), each datatype under the package that defines it.

Errors as the node gives them: a missing field is INVALID_ARGUMENT, an unknown package
NOT_FOUND, an unknown module or function INTERNAL (the node's `convert_error` and its
"Function not found" answer), an unknown datatype NOT_FOUND.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pysui.sui.sui_grpc.suimsgs.sui.rpc.v2 as pb

from chain.localnet.package_sources import MOVE_STDLIB, SOURCES, SUI_FRAMEWORK, TYPE_ORIGINS

_SCALARS = {
    "u8": pb.OpenSignatureBodyType.U8,
    "u16": pb.OpenSignatureBodyType.U16,
    "u32": pb.OpenSignatureBodyType.U32,
    "u64": pb.OpenSignatureBodyType.U64,
    "u128": pb.OpenSignatureBodyType.U128,
    "u256": pb.OpenSignatureBodyType.U256,
    "bool": pb.OpenSignatureBodyType.BOOL,
    "address": pb.OpenSignatureBodyType.ADDRESS,
}
_ABILITIES = {
    "copy": pb.Ability.COPY,
    "drop": pb.Ability.DROP,
    "store": pb.Ability.STORE,
    "key": pb.Ability.KEY,
}
_FUN = re.compile(r"^(entry )?fun (\w+)(?:<([^>]*)>)?\((.*?)\)(?:: (.+))?$")
_STRUCT = re.compile(r"^struct (\w+)(?:<([^>]*)>)? has ([\w, ]+) \{(.*)\}$")


class MetadataNotFound(LookupError):
    """An unknown package or datatype (the node answers NOT_FOUND)."""


class MetadataMissing(LookupError):
    """An unknown module or function (the node answers INTERNAL, from its resolver)."""


@dataclass
class ModuleMetadata:
    name: str
    datatypes: dict[str, pb.DatatypeDescriptor] = field(default_factory=dict)
    functions: dict[str, pb.FunctionDescriptor] = field(default_factory=dict)


def _split_top(text: str) -> list[str]:
    """`a: X<b, c>, d: Y` -> [`a: X<b, c>`, `d: Y`] (commas outside angle brackets)."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        depth += {"<": 1, ">": -1}.get(char, 0)
        current += char
    if current.strip():
        parts.append(current.strip())
    return parts


def _declarations(source: str) -> list[str]:
    """One line per declaration: an indented line continues the one before."""
    out: list[str] = []
    for line in source.strip().splitlines():
        if line.startswith(" ") and out:
            out[-1] += " " + line.strip()
        else:
            out.append(line.strip())
    return out


class Packages:
    """The metadata of one deployment's packages (`addresses`: alias -> 0x address)."""

    def __init__(self, addresses: dict[str, str]) -> None:
        self.addresses = {**addresses, SUI_FRAMEWORK: SUI_FRAMEWORK, MOVE_STDLIB: MOVE_STDLIB}
        self.modules: dict[str, dict[str, ModuleMetadata]] = {}
        for (alias, module), source in SOURCES.items():
            package = self.addresses[alias]
            meta = self.modules.setdefault(package, {}).setdefault(module, ModuleMetadata(module))
            for line in _declarations(source):
                if line.startswith("struct "):
                    datatype = self._struct(package, module, line)
                    meta.datatypes[datatype.name or ""] = datatype
                else:
                    function = self._function(line)
                    meta.functions[function.name or ""] = function

    # -- parsing --------------------------------------------------------------------------

    def _type_name(self, name: str) -> str:
        alias, module = TYPE_ORIGINS[name]
        return f"{self.addresses[alias]}::{module}::{name}"

    def _body(self, text: str, params: list[str]) -> pb.OpenSignatureBody:
        text = text.strip()
        if text in _SCALARS:
            return pb.OpenSignatureBody(type=_SCALARS[text])
        if text in params:
            return pb.OpenSignatureBody(
                type=pb.OpenSignatureBodyType.TYPE_PARAMETER, type_parameter=params.index(text)
            )
        name, _, generic = text.partition("<")
        args = [self._body(a, params) for a in _split_top(generic[:-1])] if generic else []
        if name == "vector":
            return pb.OpenSignatureBody(
                type=pb.OpenSignatureBodyType.VECTOR, type_parameter_instantiation=args
            )
        return pb.OpenSignatureBody(
            type=pb.OpenSignatureBodyType.DATATYPE,
            type_name=self._type_name(name),
            type_parameter_instantiation=args,
        )

    def _signature(self, text: str, params: list[str]) -> pb.OpenSignature:
        signature = pb.OpenSignature()
        if text.startswith("&mut "):
            signature.reference, text = pb.OpenSignatureReference.MUTABLE, text[5:]
        elif text.startswith("&"):
            signature.reference, text = pb.OpenSignatureReference.IMMUTABLE, text[1:]
        signature.body = self._body(text, params)
        return signature

    def _function(self, line: str) -> pb.FunctionDescriptor:
        match = _FUN.match(line)
        if match is None:
            raise ValueError(f"not a function signature: {line}")
        entry, name, type_params, params_text, returns_text = match.groups()
        params = [p.strip() for p in type_params.split(",")] if type_params else []
        returns = returns_text or ""
        if returns.startswith("("):
            returns = returns[1:-1]
        return pb.FunctionDescriptor(
            name=name,
            visibility=pb.FunctionDescriptorVisibility.PUBLIC,
            is_entry=bool(entry),
            type_parameters=[pb.TypeParameter(constraints=[]) for _ in params],
            parameters=[
                self._signature(p.partition(":")[2].strip(), params)
                for p in _split_top(params_text)
            ],
            returns=[self._signature(r, params) for r in _split_top(returns)],
        )

    def _struct(self, package: str, module: str, line: str) -> pb.DatatypeDescriptor:
        match = _STRUCT.match(line)
        if match is None:
            raise ValueError(f"not a struct: {line}")
        name, type_params, abilities, fields = match.groups()
        declared = [p.strip() for p in type_params.split(",")] if type_params else []
        params = [p.removeprefix("phantom ").strip() for p in declared]
        return pb.DatatypeDescriptor(
            type_name=f"{package}::{module}::{name}",
            defining_id=package,
            module=module,
            name=name,
            abilities=[_ABILITIES[a.strip()] for a in abilities.split(",")],
            type_parameters=[
                pb.TypeParameter(constraints=[], is_phantom=p.startswith("phantom "))
                for p in declared
            ],
            kind=pb.DatatypeDescriptorDatatypeKind.STRUCT,
            fields=[
                pb.FieldDescriptor(
                    name=f.partition(":")[0].strip(),
                    position=i,
                    type=self._body(f.partition(":")[2], params),
                )
                for i, f in enumerate(_split_top(fields))
            ],
        )

    # -- queries --------------------------------------------------------------------------

    def _package(self, package_id: str) -> dict[str, ModuleMetadata]:
        modules = self.modules.get(package_id)
        if modules is None:
            raise MetadataNotFound(f"package {package_id} not found")
        return modules

    def _module(self, package_id: str, module: str) -> ModuleMetadata:
        found = self._package(package_id).get(module)
        if found is None:
            raise MetadataMissing(f"Module not found: {module}")
        return found

    def function(self, package_id: str, module: str, name: str) -> pb.FunctionDescriptor:
        """The signature of `package_id::module::name`.

        Raises:
            MetadataNotFound: no such package.
            MetadataMissing: no such module or function in it.
        """
        found = self._module(package_id, module).functions.get(name)
        if found is None:
            raise MetadataMissing(f"Function not found: {name}")
        return found

    def has_function(self, package_id: str, module: str, name: str) -> bool:
        modules = self.modules.get(package_id, {})
        return module in modules and name in modules[module].functions

    def datatype(self, package_id: str, module: str, name: str) -> pb.DatatypeDescriptor:
        """The struct `package_id::module::name`.

        Raises:
            MetadataNotFound: no such package, module or datatype (a full node answers
                NOT_FOUND for all three).
        """
        try:
            found = self._module(package_id, module).datatypes.get(name)
        except MetadataMissing:
            found = None
        if found is None:
            raise MetadataNotFound(f"Datatype not found: {module}::{name}")
        return found

    def package(self, package_id: str) -> pb.Package:
        """Every module of the package, with its datatypes and functions.

        Raises:
            MetadataNotFound: no such package.
        """
        modules = self._package(package_id)
        return pb.Package(
            storage_id=package_id,
            original_id=package_id,
            version=1,
            modules=[
                pb.Module(
                    name=m.name,
                    datatypes=list(m.datatypes.values()),
                    functions=list(m.functions.values()),
                )
                for _, m in sorted(modules.items())
            ],
            type_origins=[
                pb.TypeOrigin(module_name=m.name, datatype_name=d, package_id=package_id)
                for _, m in sorted(modules.items())
                for d in m.datatypes
            ],
            linkage=[],
        )
