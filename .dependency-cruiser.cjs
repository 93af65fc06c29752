// The layer rule, generated from layers.json (the one place the layers are written): a production module may import
// from its own layer and the ones before it; no cycles; production never imports tests nor a devDependency; only
// src/sys/libc.ts loads koffi. `npm test` runs this (test/static/layers.test.ts);
// `npx depcruise -c .dependency-cruiser.cjs src kvm vfio devices cpr examples` shows the same report by hand.
const { layers } = require('./layers.json');

const PRODUCTION_ROOTS = '^(src|kvm|vfio|devices|cpr|examples)/';
const TEST_CODE = ['\\.test\\.ts$', '/testing/', '^test/', '^bench/', '^scripts/'];
const escapeRegExp = (folder) => folder.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
// A module belongs to a layer when it sits directly in one of the layer's folders.
const inFolders = (folders) => `^(${folders.map(escapeRegExp).join('|')})/[^/]+$`;

const layerRules = layers.slice(0, -1).map((layer, i) => ({
  name: `layer-${layer.name}`,
  comment: `${layer.name} (${layer.folders.join(', ')}) may import only from itself and the layers below it`,
  severity: 'error',
  from: { path: inFolders(layer.folders), pathNot: TEST_CODE },
  to: { path: inFolders(layers.slice(i + 1).flatMap((later) => later.folders)) },
}));

module.exports = {
  forbidden: [
    ...layerRules,
    {
      name: 'no-circular',
      comment: 'an import cycle makes the order of module evaluation matter and hides a missing layer',
      severity: 'error',
      from: { path: PRODUCTION_ROOTS, pathNot: TEST_CODE },
      to: { circular: true },
    },
    {
      name: 'production-not-to-tests',
      comment: 'test files and test support are not part of the VMM',
      severity: 'error',
      from: { path: PRODUCTION_ROOTS, pathNot: TEST_CODE },
      to: { path: TEST_CODE },
    },
    {
      name: 'koffi-in-one-module',
      comment: 'src/sys/libc.ts alone loads koffi: every native call goes through its checked wrappers',
      severity: 'error',
      from: { pathNot: '^src/sys/libc\\.ts$' },
      to: { path: '(^|/)node_modules/koffi/' },
    },
    {
      name: 'not-to-dev-dep',
      comment:
        'production code runs with the dependencies alone (koffi): a devDependency is for tests, builds and tools',
      severity: 'error',
      from: { path: PRODUCTION_ROOTS, pathNot: TEST_CODE },
      to: { dependencyTypes: ['npm-dev'] },
    },
    {
      name: 'not-to-unresolvable',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    // TypeScript 7 has no JavaScript API, so dependency-cruiser parses TypeScript with swc (type-only imports count).
    parser: 'swc',
    doNotFollow: { path: 'node_modules' },
    // node_modules stays in the graph, unfollowed: koffi-in-one-module and not-to-dev-dep check the packages used.
    exclude: { path: ['^dist/', '^build/'] },
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
};
