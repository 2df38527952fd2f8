// Compile contracts/*.sol with the pinned solc-js (standard JSON) and print the output as JSON.
// Called by scripts/build_contracts.py, which writes contracts/build/. Usage: node build_contracts.js DIR
const fs = require('fs');
const path = require('path');
const solc = require('solc');

const dir = process.argv[2];
const sources = {};
for (const f of fs.readdirSync(dir).filter((f) => f.endsWith('.sol')).sort()) {
  sources[f] = { content: fs.readFileSync(path.join(dir, f), 'utf8') };
}
const input = {
  language: 'Solidity',
  sources,
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: 'cancun',
    viaIR: false,
    outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] } },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
process.stdout.write(JSON.stringify({ version: solc.version(), settings: input.settings, output }));
