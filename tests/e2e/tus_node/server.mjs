// @tus/server with @tus/file-store, as its README's standalone server: the foreign tus server
// that tests/e2e/test_conformance.py runs the conformance checker against.
//
//   node server.mjs PORT DIRECTORY
//
// Serves tus 1.0.0 on http://127.0.0.1:PORT/files, uploads in DIRECTORY. SIGTERM closes the
// listener and every connection.
import { FileStore } from '@tus/file-store';
import { Server } from '@tus/server';

const [port, directory] = process.argv.slice(2);
const server = new Server({ path: '/files', datastore: new FileStore({ directory }) });
const listener = server.listen({ host: '127.0.0.1', port: Number(port) });
listener.on('listening', () => console.log(`listening on ${port}`));
process.on('SIGTERM', () => {
  listener.close(() => process.exit(0));
  listener.closeAllConnections();
});
