"""List namespaces with the official Kubernetes client for Python.

Usage: list_namespaces.py KUBECONFIG CONTEXT

Loads the kubeconfig `akscred kubeconfig` wrote, whose users run the akscred
exec plugin, and prints one namespace a line. Exit status 3 when the
`kubernetes` package is missing, so the Rust test that runs this can say so.
"""

import sys

try:
    from kubernetes import client, config
except ImportError as e:
    print(
        f"the Python package `kubernetes` is missing ({e}): "
        "install it with `python3 -m pip install kubernetes` (.ci/run does)",
        file=sys.stderr,
    )
    sys.exit(3)


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    kubeconfig, context = sys.argv[1], sys.argv[2]
    # The client runs the exec plugin itself (ExecProvider), passing
    # KUBERNETES_EXEC_INFO as kubectl does.
    api = config.new_client_from_config(config_file=kubeconfig, context=context)
    for ns in client.CoreV1Api(api).list_namespace().items:
        print(ns.metadata.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
