// Upload one file with tus-js-client, as an application would, and print a JSON report:
//   node upload.cjs <endpoint> <file> <protocol> <parallelUploads> <chunkSize> [<creation-urls.json>]
// protocol is tus-js-client's own option: "tus-v1" or "ietf-draft-05".
// The report lists every request (method, protocol headers) and response status it made.
// With creation URLs (signed URLs from the application's backend, one per resource created:
// parallelUploads partials and the final), each creation POST goes to the next of them, through
// tus-js-client's httpStack option: a signed creation URL creates exactly one resource.
'use strict'
const fs = require('fs')
const path = require('path')
const { Upload, DefaultHttpStack } = require('tus-js-client')

const [endpoint, file, protocol, parallel, chunkSize, creationUrls] = process.argv.slice(2)
const data = fs.readFileSync(file)
const minted = creationUrls ? JSON.parse(fs.readFileSync(creationUrls, 'utf8')) : null
const defaultStack = new DefaultHttpStack()
const httpStack = {
  createRequest(method, url) {
    if (minted && method === 'POST' && url === endpoint) {
      url = minted.shift()
    }
    return defaultStack.createRequest(method, url)
  },
  getName() {
    return 'minted-urls'
  },
}
const requests = []
const entries = new Map() // request object → its entry (parallel requests share URLs)

const upload = new Upload(data, {
  endpoint,
  protocol,
  parallelUploads: Number(parallel),
  chunkSize: Number(chunkSize),
  retryDelays: [0, 500, 1000],
  metadata: { filename: path.basename(file) },
  httpStack,
  onBeforeRequest(req) {
    const entry = {
      method: req.getMethod(),
      url: req.getURL(),
      interop: req.getHeader('Upload-Draft-Interop-Version') ?? null,
      tus: req.getHeader('Tus-Resumable') ?? null,
      concat: req.getHeader('Upload-Concat') ?? null,
      complete: req.getHeader('Upload-Complete') ?? null,
      contentType: req.getHeader('Content-Type') ?? null,
    }
    requests.push(entry)
    entries.set(req, entry)
  },
  onAfterResponse(req, res) {
    const entry = entries.get(req)
    entry.status = res.getStatus()
    entry.uploadComplete = res.getHeader('Upload-Complete') ?? null
  },
  onError(error) {
    console.error(String(error))
    process.exit(1)
  },
  onSuccess() {
    console.log(JSON.stringify({ url: upload.url, requests }))
  },
})
upload.start()
