"""Validates YAML files against a JSON Schema; prints {path: "valid" | "invalid: …" | "unparseable: …"}.

Used by SchemaTests. YAML is read as Kiln reads it: `on` is a key, not the boolean true
(PyYAML follows YAML 1.1, where on/off/yes/no are booleans).
"""
import json
import re
import sys

import jsonschema
import yaml


class Loader(yaml.SafeLoader):
    pass


Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))

schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
validator = jsonschema.Draft202012Validator(schema)
results = {}
for path in sys.argv[2:]:
    try:
        document = yaml.load(open(path), Loader=Loader)
    except yaml.YAMLError as error:
        results[path] = "unparseable: " + str(error).splitlines()[0]
        continue
    errors = sorted(validator.iter_errors(document), key=lambda error: list(error.path))
    results[path] = "valid" if not errors else "invalid: " + errors[0].message
print(json.dumps(results))
