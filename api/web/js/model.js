// Shows a GLB model in a canvas. three.js (api/web/vendor/viewer.js, built from
// api/viewer/) is imported here, on first use: the app's first load never carries it.
let viewer = null;

export async function showModel(canvas, url) {
  const note = document.createElement('p');
  try {
    viewer ??= import('/assets/vendor/viewer.js');
    const view = await (await viewer).showModel(canvas, url);
    // The person may have left the screen while the model loaded.
    if (!canvas.isConnected) view.dispose();
    else canvas.dispose = () => view.dispose();
  } catch (error) {
    viewer = null;
    note.className = 'error';
    note.setAttribute('role', 'alert');
    note.textContent = `The 3D view could not be shown (${error.message}). The download below still works.`;
    canvas.replaceWith(note);
  }
}
