// List namespaces with the Kubernetes client for Node.js
// (@kubernetes/client-node on npm).
//
// Usage: node list_namespaces.mjs CLIENT_NODE_DIR KUBECONFIG CONTEXT
//
// CLIENT_NODE_DIR is the installed package (.ci/run puts it under
// $AKSCRED_TOOLS/node/node_modules/@kubernetes/client-node): an ES module is
// imported by path because NODE_PATH does not apply to ES modules.
// The client runs the akscred exec plugin named in the kubeconfig itself.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [dir, kubeconfig, context] = process.argv.slice(2);
if (!context) {
  console.error('usage: node list_namespaces.mjs CLIENT_NODE_DIR KUBECONFIG CONTEXT');
  process.exit(2);
}
const k8s = await import(pathToFileURL(join(dir, 'dist', 'index.js')).href);
const kc = new k8s.KubeConfig();
kc.loadFromFile(kubeconfig);
kc.setCurrentContext(context);
const api = kc.makeApiClient(k8s.CoreV1Api);
const list = await api.listNamespace();
for (const ns of list.items) {
  console.log(ns.metadata.name);
}
