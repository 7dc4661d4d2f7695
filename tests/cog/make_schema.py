"""Writes .cog/openapi_schema.json for a predictor without the Go `cog` CLI (which
`cog build` uses): the same document shape as Cog's generator (pkg/schema/openapi.go in
the cog repository), the inputs read by the inspector the `cog` wheel ships
(cog._inspector.create_predictor). The Cog server serves that file as /openapi.json and
validates predictions against it.

usage, in tests/cog: ../../target/cog/bin/python make_schema.py predict.py:Portrait
"""
import json, os, sys
sys.path.insert(0, os.getcwd())
from cog import _inspector, _adt

ref = sys.argv[1] if len(sys.argv) > 1 else "predict.py:Predictor"
mod, name = ref.split(":")
mod = mod[:-3] if mod.endswith(".py") else mod
info = _inspector.create_predictor(mod.replace("/", "."), name)

props, required, enums = {}, [], {}
for n, f in info.inputs.items():
    p = {"x-order": f.order}
    if f.choices:
        t = f.type.primitive.json_type().get("type", "string")
        enums[n] = {"title": n, "description": "An enumeration.", "enum": list(f.choices), "type": t}
        p["allOf"] = [{"$ref": f"#/components/schemas/{n}"}]
    else:
        p["title"] = n.replace("_", " ").title()
        p.update(f.type.json_type())
    nullable = f.type.repetition in (_adt.Repetition.OPTIONAL, _adt.Repetition.OPTIONAL_REPEATED)
    has_default = f.default is not None or nullable  # default=None on non-nullable == required
    if not has_default and f.type.repetition in (_adt.Repetition.REQUIRED, _adt.Repetition.REPEATED):
        required.append(n)
    if has_default:
        p["default"] = f.type.json_encode(f.default) if f.default is not None else None
    if nullable: p["nullable"] = True
    if f.description is not None: p["description"] = f.description
    if f.ge is not None: p["minimum"] = f.ge
    if f.le is not None: p["maximum"] = f.le
    if f.min_length is not None: p["minLength"] = f.min_length
    if f.max_length is not None: p["maxLength"] = f.max_length
    if f.regex is not None: p["pattern"] = f.regex
    if f.deprecated: p["deprecated"] = True
    props[n] = p

inp = {"title": "Input", "type": "object", "properties": props}
if required: inp["required"] = required
schemas = {"Input": inp, "Output": info.output.json_type(), **enums}
schemas["PredictionRequest"] = {"title": "PredictionRequest", "type": "object", "properties": {
    "id": {"title": "Id", "type": "string"}, "input": {"$ref": "#/components/schemas/Input"}}}
schemas["PredictionResponse"] = {"title": "PredictionResponse", "type": "object", "properties": {
    "input": {"$ref": "#/components/schemas/Input"}, "output": {"$ref": "#/components/schemas/Output"},
    **{k: {"title": k.replace("_", " ").title(), "type": "string"} for k in ("id", "version", "status", "error", "logs")},
    **{k: {"title": k.replace("_", " ").title(), "type": "string", "format": "date-time"} for k in ("created_at", "started_at", "completed_at")},
    "metrics": {"title": "Metrics", "type": "object"}}}
schemas["Status"] = {"title": "Status", "description": "An enumeration.", "type": "string",
                     "enum": ["starting", "processing", "succeeded", "canceled", "failed"]}
spec = {"openapi": "3.0.2", "info": {"title": "Cog", "version": "0.1.0"},
        "paths": {"/predictions": {"post": {"summary": "Predict", "operationId": "predict_predictions_post",
            "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictionRequest"}}}},
            "responses": {"200": {"description": "Successful Response", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictionResponse"}}}}}}}},
        "components": {"schemas": schemas}}
os.makedirs(".cog", exist_ok=True)
json.dump(spec, open(".cog/openapi_schema.json", "w"))
print(json.dumps(schemas["Input"], indent=1))
