"""Writes rendered/<layer>.yaml: what `kubectl apply -k <layer>` would apply, as one plain file.

People without kustomize apply the rendered file with `kubectl apply -f`. A directory holding a
kustomization.yaml cannot be applied with `kubectl apply -f` (kubectl tries to create the
Kustomization itself), hence one ready file per layer.

Only the kustomize features these layers use are understood: `resources` (files, or directories
with their own kustomization.yaml), `namespace`, `images` and `patches` that are strategic-merge
patches naming their target. Anything else in a kustomization.yaml stops the script, so a layer
cannot silently render differently here and under kustomize. Lists merge the way Kubernetes'
strategic merge does for the fields below (containers by name, mounts by path...); any other list
is replaced by the patch's.

    .venv/bin/python deploy/kubernetes/render.py          # rewrite rendered/*.yaml
    .venv/bin/python deploy/kubernetes/render.py --check  # exit 1 if they are out of date
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
LAYERS = ("base", "production")
SUPPORTED_FIELDS = {"apiVersion", "kind", "resources", "namespace", "images", "patches"}
# Strategic-merge keys of the list fields these manifests patch (from the Kubernetes API's
# patchMergeKey markers).
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "envFrom": None,  # atomic in the API: replaced whole
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
}
CLUSTER_SCOPED_KINDS = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PriorityClass", "StorageClass"}

Resource = dict[str, Any]


def _load_documents(path: Path) -> list[Resource]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _merge(base: Any, patch: Any, field: str = "") -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            if key.startswith("$"):
                raise SystemExit(f"render.py: patch directive {key!r} is not supported")
            merged[key] = _merge(base[key], value, key) if key in base else copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(patch, list) and MERGE_KEYS.get(field):
        key = MERGE_KEYS[field]
        merged_list = [copy.deepcopy(item) for item in base]
        index = {item[key]: position for position, item in enumerate(merged_list)}
        for item in patch:
            if item[key] in index:
                merged_list[index[item[key]]] = _merge(merged_list[index[item[key]]], item, "")
            else:
                merged_list.append(copy.deepcopy(item))
        return merged_list
    return copy.deepcopy(patch)


def _set_images(resource: Resource, images: list[dict[str, str]]) -> None:
    pod = resource.get("spec", {}).get("template", {}).get("spec", {})
    for container in [*pod.get("initContainers", []), *pod.get("containers", [])]:
        name = container["image"].rsplit(":", 1)[0]
        for image in images:
            if image["name"] == name:
                tag = image.get("newTag", container["image"].rsplit(":", 1)[-1])
                container["image"] = f"{image.get('newName', name)}:{tag}"


def render(layer_dir: Path) -> list[Resource]:
    """The resources of one kustomization directory, in the order kubectl should apply them."""
    kustomization = yaml.safe_load((layer_dir / "kustomization.yaml").read_text())
    unknown = set(kustomization) - SUPPORTED_FIELDS
    if unknown:
        raise SystemExit(f"render.py: {layer_dir.name}/kustomization.yaml uses {sorted(unknown)}")
    resources: list[Resource] = []
    for entry in kustomization.get("resources", []):
        path = (layer_dir / entry).resolve()
        resources.extend(render(path) if path.is_dir() else _load_documents(path))
    for patch_entry in kustomization.get("patches", []):
        for patch in _load_documents(layer_dir / patch_entry["path"]):
            targets = [
                position
                for position, resource in enumerate(resources)
                if resource["kind"] == patch["kind"]
                and resource["metadata"]["name"] == patch["metadata"]["name"]
            ]
            if len(targets) != 1:
                raise SystemExit(f"render.py: patch {patch_entry['path']} matches {len(targets)} resources")
            resources[targets[0]] = _merge(resources[targets[0]], patch)
    for resource in resources:
        _set_images(resource, kustomization.get("images", []))
        if "namespace" in kustomization and resource["kind"] not in CLUSTER_SCOPED_KINDS:
            resource["metadata"]["namespace"] = kustomization["namespace"]
    # Namespaces first, so the objects that live in them can be created in the same apply.
    return sorted(resources, key=lambda resource: resource["kind"] != "Namespace")


def rendered_text(layer: str) -> str:
    header = (
        f"# Generated by deploy/kubernetes/render.py from {layer}/kustomization.yaml: edit the layer,\n"
        f"# then run the script. `kubectl apply -f` this file when kustomize is not at hand.\n"
    )
    body = yaml.safe_dump_all(render(HERE / layer), sort_keys=False, default_flow_style=False, width=120)
    return header + body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a rendered file is out of date")
    args = parser.parse_args()
    stale = []
    for layer in LAYERS:
        target = HERE / "rendered" / f"{layer}.yaml"
        text = rendered_text(layer)
        if target.exists() and target.read_text() == text:
            continue
        if args.check:
            stale.append(str(target.relative_to(HERE)))
        else:
            target.write_text(text)
    if stale:
        print(f"out of date: {', '.join(stale)}; run deploy/kubernetes/render.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
