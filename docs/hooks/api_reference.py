"""MkDocs hook: the API reference page (reference/api.md), generated at build time from the
protos' own comments and the error table of docs/api-errors.md, so the reference can never drift
from the API. The protos are compiled with grpcio-tools (the project's pinned generator) into a
descriptor set with source info; nothing is written into docs/.

It also brings the cluster documents that live beside their configs (cluster/README.md,
cluster/SCALING.md) into the site, and points the docs' links to them at those pages: in the
repository the links stay plain relative links that work where they are read."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PUBLIC = ["twin/fleet/v1/fleet.proto", "twin/dcc/v1/dcc.proto", "twin/csp/v1/csp.proto"]
PAGE = "reference/api.md"
# SourceCodeInfo paths (descriptor.proto field numbers).
MESSAGE, ENUM, SERVICE = 4, 5, 6
FIELD, NESTED, NESTED_ENUM, METHOD, ENUM_VALUE = 2, 3, 4, 2, 2


def descriptor_set() -> Any:
    """The FileDescriptorSet of the public protos, with comments. RuntimeError if protoc fails."""
    import grpc_tools
    from google.protobuf import descriptor_pb2
    from grpc_tools import protoc

    well_known = Path(grpc_tools.__file__).parent / "_proto"  # google/protobuf/*.proto, shipped with protoc
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "api.pb"
        args = ["protoc", f"-I{ROOT / 'protos'}", f"-I{well_known}", "--include_source_info",
                f"--descriptor_set_out={out}", *PUBLIC]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {PUBLIC}")
        fds = descriptor_pb2.FileDescriptorSet()
        fds.ParseFromString(out.read_bytes())
    return fds


def _comments(file: Any) -> dict[tuple[int, ...], str]:
    out = {}
    for loc in file.source_code_info.location:
        text = (loc.leading_comments or loc.trailing_comments).strip()
        if text:
            out[tuple(loc.path)] = " ".join(line.strip() for line in text.splitlines())
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def error_rows() -> dict[str, list[list[str]]]:
    """The rows of docs/api-errors.md's table by RPC ("FleetService.GetClock", "any")."""
    rows: dict[str, list[list[str]]] = {}
    for line in (ROOT / "docs" / "api-errors.md").read_text().splitlines():
        if not line.startswith("| ") or line.startswith("| RPC") or line.startswith("| ---"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4:
            rows.setdefault(cells[0], []).append(cells[1:4])
    return rows


def _type_name(field: Any) -> str:
    from google.protobuf import descriptor_pb2

    f = descriptor_pb2.FieldDescriptorProto
    if field.type in (f.TYPE_MESSAGE, f.TYPE_ENUM):
        name = field.type_name.lstrip(".")
    else:
        name = f.Type.Name(field.type).removeprefix("TYPE_").lower()
    if field.label == f.LABEL_REPEATED:
        return f"repeated {name}"
    return name


def _anchor(full_name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", full_name.lower()).strip("-")


def _message(out: list[str], msg: Any, path: tuple[int, ...], prefix: str, comments: dict) -> None:
    full = f"{prefix}.{msg.name}"
    out.append(f"### {full} {{#{_anchor(full)}}}\n")
    if comments.get(path):
        out.append(comments[path] + "\n")
    if msg.field:
        out.append("| field | type | what |\n| --- | --- | --- |")
        for j, field in enumerate(msg.field):
            out.append(f"| `{field.name}` | `{_type_name(field)}` | {_cell(comments.get((*path, FIELD, j), ''))} |")
        out.append("")
    for k, nested in enumerate(msg.nested_type):
        if not nested.options.map_entry:
            _message(out, nested, (*path, NESTED, k), full, comments)
    for k, enum in enumerate(msg.enum_type):
        _enum(out, enum, (*path, NESTED_ENUM, k), full, comments)


def _enum(out: list[str], enum: Any, path: tuple[int, ...], prefix: str, comments: dict) -> None:
    full = f"{prefix}.{enum.name}"
    out.append(f"### {full} {{#{_anchor(full)}}}\n")
    if comments.get(path):
        out.append(comments[path] + "\n")
    out.append("| value | number | what |\n| --- | --- | --- |")
    for j, v in enumerate(enum.value):
        out.append(f"| `{v.name}` | {v.number} | {_cell(comments.get((*path, ENUM_VALUE, j), ''))} |")
    out.append("")


def render() -> str:
    """The whole reference page, Markdown."""
    fds = descriptor_set()
    errors = error_rows()
    out = ["# API reference", "",
           "Generated when the docs are built from the comments in `protos/` and the error table of",
           "[API errors](../api-errors.md): every service, method, message and enum of the public API,",
           "and for each method the errors it answers (rows for `any` method apply to all).", ""]
    for file in fds.file:
        if file.name not in PUBLIC:
            continue
        comments = _comments(file)
        out += [f"## {file.package}", "", f"`{file.name}`", ""]
        for s, service in enumerate(file.service):
            out += [f"### {service.name}", ""]
            if comments.get((SERVICE, s)):
                out += [comments[(SERVICE, s)], ""]
            for m, method in enumerate(service.method):
                stream = ("stream " if method.client_streaming else "", "stream " if method.server_streaming else "")
                req, resp = method.input_type.lstrip("."), method.output_type.lstrip(".")
                out += [f"#### {service.name}.{method.name}", "",
                        f"`rpc {method.name}({stream[0]}{req}) returns ({stream[1]}{resp})`", ""]
                if comments.get((SERVICE, s, METHOD, m)):
                    out += [comments[(SERVICE, s, METHOD, m)], ""]
                rows = errors.get(f"{service.name}.{method.name}", [])
                if rows:
                    out += ["| error case | code | field |", "| --- | --- | --- |"]
                    out += [f"| {_cell(c)} | {code} | {fld} |" for c, code, fld in rows]
                    out.append("")
        out += [f"### Messages of {file.package}", ""]
        for i, msg in enumerate(file.message_type):
            _message(out, msg, (MESSAGE, i), file.package, comments)
        for i, enum in enumerate(file.enum_type):
            _enum(out, enum, (ENUM, i), file.package, comments)
    return "\n".join(out) + "\n"


# Documents outside docs/ the site includes: repository path -> page in the site.
OUTSIDE = {"cluster/README.md": "cluster/overview.md", "cluster/SCALING.md": "cluster/scaling.md"}
_LINK = re.compile(r"\]\(([^)#\s]+\.md)(#[^)\s]*)?\)")


def _rewrite(markdown: str, repo_path: str, site_path: str) -> str:
    """`markdown` of the document at `repo_path` (shown at `site_path`) with each link to a
    document of OUTSIDE, or from an OUTSIDE document to docs/, pointed at its page in the site."""
    import posixpath

    here, site_here = posixpath.dirname(repo_path), posixpath.dirname(site_path)

    def fix(m: re.Match[str]) -> str:
        target = posixpath.normpath(posixpath.join(here, m.group(1)))
        if target in OUTSIDE:
            page = OUTSIDE[target]
        elif target.startswith("docs/"):
            page = target.removeprefix("docs/")
        else:
            return m.group(0)
        return f"]({posixpath.relpath(page, site_here or '.')}{m.group(2) or ''})"

    return _LINK.sub(fix, markdown)


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    files.append(File.generated(config, PAGE, content=render()))
    for repo_path, page in OUTSIDE.items():
        text = (ROOT / repo_path).read_text()
        files.append(File.generated(config, page, content=_rewrite(text, repo_path, page)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if page.file.src_uri in OUTSIDE.values():
        return markdown  # rewritten when it was read
    return _rewrite(markdown, f"docs/{page.file.src_uri}", page.file.src_uri)
