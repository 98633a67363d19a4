// Chart.js, only the parts the dashboard draws (tree-shaken), as a Svelte action:
// <canvas use:chart={config}>. Colours follow the page's light or dark scheme.
import {
  Chart,
  BarController,
  BarElement,
  LineController,
  LineElement,
  PointElement,
  DoughnutController,
  ArcElement,
  CategoryScale,
  LinearScale,
  Tooltip,
  Legend,
} from 'chart.js';

Chart.register(
  BarController,
  BarElement,
  LineController,
  LineElement,
  PointElement,
  DoughnutController,
  ArcElement,
  CategoryScale,
  LinearScale,
  Tooltip,
  Legend,
);

export const palette = [
  '#2f6fdf', '#e0792b', '#2a9d6a', '#c0463b', '#8a5cc9',
  '#b8860b', '#1a9bb0', '#d14f91', '#6b7a8f', '#5a8f29',
];

/** The same colour for the same model or key on every chart. */
export function colorFor(name) {
  let h = 0;
  for (const c of String(name)) h = (h * 31 + c.codePointAt(0)) >>> 0;
  return palette[h % palette.length];
}

function themed() {
  const css = getComputedStyle(document.documentElement);
  Chart.defaults.color = css.getPropertyValue('--muted').trim() || '#666';
  Chart.defaults.borderColor = css.getPropertyValue('--line').trim() || '#ddd';
  Chart.defaults.font.family = css.getPropertyValue('font-family');
}

export function chart(canvas, config) {
  themed();
  const make = (c) =>
    new Chart(canvas, {
      ...c,
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        datasets: { bar: { maxBarThickness: 48 } },
        ...c.options,
      },
    });
  let instance = make(config);
  return {
    update(next) {
      instance.destroy();
      instance = make(next);
    },
    destroy() {
      instance.destroy();
    },
  };
}
