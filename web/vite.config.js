// Builds the dashboard into build/ (scratch); scripts/compress.mjs then writes the gzipped
// files that are committed in dist/ and embedded in the binary (src/dashboard.rs).
import { defineConfig } from 'vite';
import { svelte } from '@sveltejs/vite-plugin-svelte';

export default defineConfig({
  base: '/dashboard/',
  plugins: [svelte()],
  build: {
    outDir: 'build',
    emptyOutDir: true,
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    reportCompressedSize: false,
    target: 'es2022',
  },
  // `npm run dev`: the Vite dev server, with the admin API of a local Claudeway behind it.
  server: { proxy: { '/admin': process.env.CLAUDEWAY_URL || 'http://127.0.0.1:3000' } },
});
