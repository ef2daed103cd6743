// @tus/server with @tus/file-store, as its README's standalone server, for `python -m bench --peers`.
//
//   node tus_node_server.mjs NODE_MODULES PORT DIRECTORY
//
// NODE_MODULES is where `npm ci` installed package-lock.json (a cache directory, not this one).
// Serves tus 1.0 on http://127.0.0.1:PORT/files, uploads in DIRECTORY. One process, no cluster:
// @tus/server's MemoryLocker is per process. SIGTERM closes the listener and every connection.
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [modules, port, directory] = process.argv.slice(2);
const resolve = createRequire(join(modules, 'package.json')).resolve;
const load = (name) => import(pathToFileURL(resolve(name)).href);
const { Server } = await load('@tus/server');
const { FileStore } = await load('@tus/file-store');

const server = new Server({ path: '/files', datastore: new FileStore({ directory }) });
const listener = server.listen({ host: '127.0.0.1', port: Number(port) });
process.on('SIGTERM', () => {
  listener.close(() => process.exit(0));
  listener.closeAllConnections();
});
