"""openapi_check: checks loadtestd's HTTP answers against openapi/openapi.yaml.

Integration tests build one OpenApi from the spec file and pass every answer they receive to
OpenApi.validate(method, path, status, headers, body). It finds the operation whose path
template matches the concrete path, checks that the status is documented for it, that the
required response headers are there and well formed, and that the body is what the response
declares: empty when it declares no content, otherwise JSON of the declared media type that
validates against the schema (JSON Schema 2020-12, $refs resolved inside the whole document).
Every mismatch raises AssertionError with a message naming the request, the status and the
place in the body at fault.

Three answers are checked even though no operation describes them, as the spec's info section
says: a path no template matches must answer 404 with the NotFound response, a method a path
does not have must answer 405 with the MethodNotAllowed response, and HEAD is answered like
GET but without a body.

Depends only on PyYAML and jsonschema (Debian 12: 4.10, RefResolver; newer releases use the
referencing registry, which is used when present).
"""

import json
import re
from urllib.parse import urlsplit

import jsonschema
import yaml
from jsonschema import Draft202012Validator

try:  # jsonschema >= 4.18
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    _HAVE_REFERENCING = True
except ImportError:  # Debian 12's jsonschema 4.10
    _HAVE_REFERENCING = False

# Base URI the document is registered under; never fetched.
_BASE_URI = "https://loadtestd.invalid/openapi.yaml"
_HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
_MAX_SHOWN_ERRORS = 5


def pointer_escape(token):
    """Escapes one JSON pointer reference token (RFC 6901)."""
    return str(token).replace("~", "~0").replace("/", "~1")


def pointer_join(pointer, *tokens):
    """Returns pointer extended by tokens (each escaped)."""
    return pointer + "".join("/" + pointer_escape(t) for t in tokens)


def _pointer_get(doc, pointer):
    node = doc
    if pointer in ("", "#"):
        return node
    for raw in pointer.lstrip("#").split("/")[1:]:
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list):
            node = node[int(token)]
        else:
            node = node[token]
    return node


def _short(value, limit=300):
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _reject_constant(name):
    raise ValueError("%s is not JSON" % name)


def _no_duplicate_keys(pairs):
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError("duplicate object key %r" % key)
        obj[key] = value
    return obj


def parse_json(body):
    """Parses strict JSON (no NaN/Infinity, no duplicate keys). Raises ValueError."""
    if isinstance(body, (bytes, bytearray)):
        body = bytes(body).decode("utf-8")
    return json.loads(body, parse_constant=_reject_constant, object_pairs_hook=_no_duplicate_keys)


def _normalise_headers(headers):
    """Returns {lower-case name: value} from a dict, an HTTPMessage or a list of pairs."""
    if headers is None:
        return {}
    items = headers.items() if hasattr(headers, "items") else headers
    out = {}
    for name, value in items:
        out.setdefault(str(name).lower(), str(value))
    return out


def _describe(error, indent="  "):
    """Lines explaining a jsonschema ValidationError; looks into oneOf/anyOf branches."""
    where = "/" + "/".join(pointer_escape(p) for p in error.absolute_path)
    lines = ["%sat %s: %s (schema %s)" % (indent, where, _short(error.message),
                                           "/".join(str(p) for p in error.absolute_schema_path))]
    if not error.context:
        return lines
    branches = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)

    def mismatched(errs):
        # A branch that fails on a const (our discriminators: kind, status, pass) or on the
        # type of the value itself is simply not the branch meant; the others explain more.
        return any(e.validator == "const" or
                   (e.validator == "type" and list(e.absolute_path) == list(error.absolute_path))
                   for e in errs)

    chosen = [errs for errs in branches.values() if not mismatched(errs)]
    if not chosen:
        chosen = list(branches.values())
    for errs in chosen[:2]:
        errs.sort(key=lambda e: -len(e.absolute_path))
        for sub in errs[:3]:
            lines.extend(_describe(sub, indent + "  "))
    return lines


class OpenApi:
    """An OpenAPI 3.1 document and validators for the answers it describes."""

    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            self.doc = yaml.safe_load(f)
        if not isinstance(self.doc, dict) or not str(self.doc.get("openapi", "")).startswith("3.1"):
            raise ValueError("%s is not an OpenAPI 3.1 document" % path)
        self.path = path
        self._validators = {}
        if _HAVE_REFERENCING:
            resource = Resource.from_contents(self.doc, default_specification=DRAFT202012)
            self._registry = Registry().with_resource(_BASE_URI, resource)
        else:
            self._resolver = jsonschema.RefResolver(base_uri=_BASE_URI, referrer=self.doc)
        # (template, compiled regex, number of literal segments); literal-rich templates first
        # so /v1/runs/x never shadows a more specific route.
        self._templates = []
        for template in (self.doc.get("paths") or {}):
            regex, literals = self._compile_template(template)
            self._templates.append((template, regex, literals))
        self._templates.sort(key=lambda t: -t[2])

    # ------------------------------------------------------------------ public

    def operations(self):
        """Returns the set of (METHOD, path template) the document describes."""
        ops = set()
        for template, item in (self.doc.get("paths") or {}).items():
            for method in _HTTP_METHODS:
                if method in item:
                    ops.add((method.upper(), template))
        return ops

    def match(self, path):
        """Returns the path template matching a concrete path (query ignored), or None."""
        path = urlsplit(path).path
        for template, regex, _ in self._templates:
            if regex.fullmatch(path):
                return template
        return None

    def schema_errors(self, pointer, instance):
        """Validates instance against the schema at JSON pointer (e.g.
        '#/components/schemas/RunSpec'); returns a list of explanation lines, empty if valid."""
        validator = self._validator(pointer)
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
        lines = []
        for error in errors[:_MAX_SHOWN_ERRORS]:
            lines.extend(_describe(error))
        if len(errors) > _MAX_SHOWN_ERRORS:
            lines.append("  ... and %d more" % (len(errors) - _MAX_SHOWN_ERRORS))
        return lines

    def validate_schema(self, name_or_pointer, instance, what="instance"):
        """Validates instance against a component schema name ('RunDocument') or a pointer;
        raises AssertionError when it does not conform."""
        pointer = name_or_pointer
        if not pointer.startswith("#"):
            pointer = pointer_join("#/components/schemas", name_or_pointer)
        lines = self.schema_errors(pointer, instance)
        if lines:
            raise AssertionError("%s does not conform to %s:\n%s"
                                 % (what, pointer, "\n".join(lines)))

    def validate_request(self, method, path, body, content_type="application/json"):
        """Validates a request body against the operation's requestBody schema; raises
        AssertionError when it does not conform (for example specs)."""
        template, op_pointer, op = self._operation(method, path)
        if op is None:
            raise AssertionError("%s %s: no such operation in %s" % (method, path, self.path))
        if "requestBody" not in op:
            raise AssertionError("%s %s declares no request body" % (method, template))
        rb, rb_pointer = self.deref(op["requestBody"], pointer_join(op_pointer, "requestBody"))
        media = content_type.split(";")[0].strip().lower()
        if media not in (rb.get("content") or {}):
            raise AssertionError("%s %s: request media type %s not declared"
                                 % (method, template, media))
        instance = parse_json(body) if isinstance(body, (bytes, bytearray, str)) else body
        self.validate_schema(pointer_join(rb_pointer, "content", media, "schema"), instance,
                             what="request body of %s %s" % (method, template))

    def validate(self, method, path, status, headers, body_bytes):
        """Checks one answer of the daemon. method: 'GET', ...; path: the concrete request
        path (a query string is ignored); status: int; headers: dict, HTTPMessage or pairs;
        body_bytes: bytes (or str; None = empty). Returns the parsed JSON body or None.
        Raises AssertionError describing the first mismatch."""
        method = method.upper()
        status = int(status)
        body_bytes = b"" if body_bytes is None else body_bytes
        if isinstance(body_bytes, str):
            body_bytes = body_bytes.encode("utf-8")
        what = "%s %s -> %d" % (method, path, status)
        headers = _normalise_headers(headers)

        head = method == "HEAD"
        template, op_pointer, op = self._operation(method, path)
        if head and template is not None and op is None:
            template, op_pointer, op = self._operation("GET", path)
        if template is None:
            if status != 404:
                raise AssertionError("%s: no path template in %s matches %s, so only 404 is "
                                     "documented" % (what, self.path, urlsplit(path).path))
            response, resp_pointer = self.deref({"$ref": "#/components/responses/NotFound"}, "")
        elif op is None:
            if status != 405:
                raise AssertionError("%s: %s has no %s operation, so only 405 is documented"
                                     % (what, template, method))
            response, resp_pointer = self.deref(
                {"$ref": "#/components/responses/MethodNotAllowed"}, "")
        else:
            responses = op.get("responses") or {}
            key = None
            for candidate in (str(status), "%dXX" % (status // 100), "default"):
                if candidate in responses:
                    key = candidate
                    break
            if key is None:
                raise AssertionError("%s: status %d is not documented for %s %s (documented: %s)"
                                     % (what, status, method, template,
                                        ", ".join(sorted(str(k) for k in responses))))
            response, resp_pointer = self.deref(
                responses[key], pointer_join(op_pointer, "responses", key))

        self._check_headers(what, response, resp_pointer, headers)
        if head:
            if body_bytes:
                raise AssertionError("%s: an answer to HEAD has a body %r"
                                     % (what, _short(body_bytes)))
            return None
        return self._check_body(what, response, resp_pointer, headers, body_bytes)

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _compile_template(template):
        parts = []
        literals = 0
        for segment in template.split("/"):
            if re.fullmatch(r"\{[^{}/]+\}", segment):
                parts.append("[^/]+")
            else:
                parts.append(re.escape(segment))
                literals += 1
        return re.compile("/".join(parts)), literals

    def _operation(self, method, path):
        """Returns (template, operation pointer, operation dict) or (None, None, None) when no
        template matches, or (template, None, None) when the template lacks the method."""
        template = self.match(path)
        if template is None:
            return None, None, None
        item = self.doc["paths"][template]
        op = item.get(method.lower())
        if op is None:
            return template, None, None
        return template, pointer_join("#/paths", template, method.lower()), op

    def deref(self, node, pointer):
        """Follows local $refs (responses, headers, parameters). Returns (node, pointer)."""
        seen = set()
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            if not ref.startswith("#/") or ref in seen:
                raise AssertionError("cannot follow $ref %r in %s" % (ref, self.path))
            seen.add(ref)
            pointer = ref
            node = _pointer_get(self.doc, ref)
        return node, pointer

    def _validator(self, pointer):
        validator = self._validators.get(pointer)
        if validator is None:
            schema = {"$ref": _BASE_URI + pointer}
            if _HAVE_REFERENCING:
                validator = Draft202012Validator(schema, registry=self._registry)
            else:
                validator = Draft202012Validator(schema, resolver=self._resolver)
            self._validators[pointer] = validator
        return validator

    def _check_headers(self, what, response, resp_pointer, headers):
        for name, header in (response.get("headers") or {}).items():
            header, header_pointer = self.deref(header, pointer_join(resp_pointer, "headers", name))
            value = headers.get(name.lower())
            if value is None:
                if header.get("required"):
                    raise AssertionError("%s: required header %s is missing (headers: %s)"
                                         % (what, name, _short(headers)))
                continue
            schema = header.get("schema")
            if schema is None:
                continue
            instance = value
            if schema.get("type") == "integer":
                try:
                    instance = int(value)
                except ValueError:
                    raise AssertionError("%s: header %s=%r is not an integer" % (what, name, value))
            lines = self.schema_errors(pointer_join(header_pointer, "schema"), instance)
            if lines:
                raise AssertionError("%s: header %s=%r does not conform:\n%s"
                                     % (what, name, value, "\n".join(lines)))

    def _check_body(self, what, response, resp_pointer, headers, body_bytes):
        content = response.get("content")
        if not content:
            if body_bytes:
                raise AssertionError("%s: the response declares no content but the body is %r"
                                     % (what, _short(body_bytes)))
            return None
        ctype = headers.get("content-type")
        if ctype is None:
            raise AssertionError("%s: no Content-Type (declared: %s)" % (what, ", ".join(content)))
        media = ctype.split(";")[0].strip().lower()
        if media not in content:
            raise AssertionError("%s: Content-Type %r is not one of the declared %s"
                                 % (what, ctype, ", ".join(content)))
        schema_pointer = pointer_join(resp_pointer, "content", media, "schema")
        if not media.endswith("json"):
            return body_bytes
        try:
            instance = parse_json(body_bytes)
        except (ValueError, UnicodeDecodeError) as e:
            raise AssertionError("%s: body is not valid JSON (%s): %r"
                                 % (what, e, _short(body_bytes)))
        if "schema" in content[media]:
            lines = self.schema_errors(schema_pointer, instance)
            if lines:
                raise AssertionError("%s: body does not conform to %s:\n%s\nbody: %s"
                                     % (what, schema_pointer, "\n".join(lines),
                                        _short(body_bytes.decode("utf-8", "replace"), 2000)))
        return instance
