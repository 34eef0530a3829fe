"""YAML for tests/api/containers.rs, run with $CALLGATE_PYTHON (the venv of
deploy/local.sh, which has PyYAML and jsonschema).

  yamlcheck.py json FILE               print the YAML document as JSON
  yamlcheck.py validate SCHEMA FILE    validate the document against a JSON
                                       schema: one line per error, exit 1 if any

FILE may be `-` for stdin. A key given twice in one mapping is an error (PyYAML
would silently keep the last one; Docker Compose refuses such a file).
"""

import json
import sys

import jsonschema
import yaml


class StrictLoader(yaml.SafeLoader):
    pass


def no_duplicate_keys(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, no_duplicate_keys)


def load(path):
    text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    return yaml.load(text, Loader=StrictLoader)


def validate(schema_path, path):
    with open(schema_path, encoding="utf-8") as f:
        schema = json.load(f)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    errors = sorted(cls(schema).iter_errors(load(path)), key=lambda e: list(e.absolute_path))
    for err in errors:
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        print(f"{where}: {err.message}")
    return 1 if errors else 0


def main(argv):
    try:
        if len(argv) == 3 and argv[1] == "json":
            json.dump(load(argv[2]), sys.stdout)
            return 0
        if len(argv) == 4 and argv[1] == "validate":
            return validate(argv[2], argv[3])
    except yaml.YAMLError as err:
        print(f"not valid YAML: {err}")
        return 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
