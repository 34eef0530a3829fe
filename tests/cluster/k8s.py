"""Kubernetes files for tests/api/cluster.rs, run with $CALLGATE_PYTHON (the
venv of deploy/local.sh, which has PyYAML and kubernetes-validate).

  k8s.py schemas OUT_ROOT VERSION   print the directory of the Kubernetes
                                    JSON schemas for VERSION, laid out for
                                    kubeconform (made under OUT_ROOT once)
  k8s.py json                       print the YAML documents on stdin (helm
                                    template's output) as a JSON list; a key
                                    given twice in a mapping is an error

The schemas are the ones the `kubernetes-validate` package ships, strict
(unknown fields are errors). They refer to their shared definitions by an
absolute URI (`/api/_definitions.json` below their `$id`,
https://kubernetes.io/api/...), which kubeconform would try to fetch; the
copies refer to `_definitions.json` beside them instead and have no `$id`, so
nothing is ever downloaded. Nothing else is changed.
"""

import importlib.metadata
import importlib.resources
import json
import os
import sys
import tempfile

import yaml

ABSOLUTE = "/api/_definitions.json#"
RELATIVE = "_definitions.json#"


def rewrite(node):
    if isinstance(node, dict):
        node.pop("$id", None)
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(ABSOLUTE):
                node[key] = RELATIVE + value[len(ABSOLUTE):]
            else:
                rewrite(value)
    elif isinstance(node, list):
        for item in node:
            rewrite(item)


def schemas(out_root, version):
    version = version.lstrip("v")
    package = importlib.metadata.version("kubernetes-validate")
    name = f"v{version}-local-strict"
    source = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema" / name
    if not source.is_dir():
        print(f"kubernetes-validate {package} ships no schemas for Kubernetes {version} ({name})", file=sys.stderr)
        return 2
    target = os.path.join(out_root, f"kubernetes-validate-{package}", name)
    if not os.path.isdir(target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        staging = tempfile.mkdtemp(prefix=name + ".", dir=os.path.dirname(target))
        for entry in source.iterdir():
            if not entry.name.endswith(".json"):
                continue
            schema = json.loads(entry.read_text(encoding="utf-8"))
            rewrite(schema)
            with open(os.path.join(staging, entry.name), "w", encoding="utf-8") as f:
                json.dump(schema, f)
        try:
            os.rename(staging, target)
        except OSError:
            # Made meanwhile by a test beside this one: the same files.
            if not os.path.isdir(target):
                raise
    print(target)
    return 0


class StrictLoader(yaml.SafeLoader):
    pass


def no_duplicate_keys(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, no_duplicate_keys)


def documents():
    try:
        docs = [d for d in yaml.load_all(sys.stdin.read(), Loader=StrictLoader) if d is not None]
    except yaml.YAMLError as err:
        print(f"not valid YAML: {err}")
        return 1
    json.dump(docs, sys.stdout)
    return 0


def main(argv):
    if len(argv) == 4 and argv[1] == "schemas":
        return schemas(argv[2], argv[3])
    if len(argv) == 2 and argv[1] == "json":
        return documents()
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
