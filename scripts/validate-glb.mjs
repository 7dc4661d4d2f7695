// Validates GLB files with the Khronos glTF validator and prints its report summary.
// Manual, not part of CI. The validator is not a dependency of this repository; install
// it in a temporary directory and point NODE_PATH there:
//
//   dir=$(mktemp -d) && (cd "$dir" && npm init -y >/dev/null && npm install gltf-validator)
//   cargo run --release -p petportrait-studio-bench -- tests/fixtures/chelsea.jpg --write /tmp/studio   # every style's files
//   NODE_PATH="$dir/node_modules" node scripts/validate-glb.mjs /tmp/studio/sculpture-relief.glb
//
// Exits non-zero when any file has errors or warnings.
import fs from 'node:fs';
import { createRequire } from 'node:module';

const validator = createRequire(import.meta.url)('gltf-validator');
let failed = false;
for (const file of process.argv.slice(2)) {
  const report = await validator.validateBytes(new Uint8Array(fs.readFileSync(file)), { maxIssues: 100 });
  const { numErrors, numWarnings, numInfos, numHints, messages } = report.issues;
  console.log(`${file}: ${numErrors} errors, ${numWarnings} warnings, ${numInfos} infos, ${numHints} hints`);
  for (const m of messages) console.log(`  [${m.severity}] ${m.code} ${m.pointer ?? ''} ${m.message}`);
  console.log('  info:', JSON.stringify(report.info));
  failed ||= numErrors > 0 || numWarnings > 0;
}
process.exit(failed ? 1 : 0);
