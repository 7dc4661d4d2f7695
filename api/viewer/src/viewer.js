// The 3D view of a sculpture's GLB file. The app imports this module only when a
// sculpture is on screen, so three.js never weighs on the first load.
import {
  Box3, Color, DirectionalLight, HemisphereLight, PerspectiveCamera, Scene, Vector3, WebGLRenderer,
} from 'three';
import { GLTFLoader } from 'three/examples/jsm/loaders/GLTFLoader.js';
import { OrbitControls } from 'three/examples/jsm/controls/OrbitControls.js';

// Shows the model at `url` in `canvas`. The arrow keys turn it and + / - zoom, so the
// view works without a pointer; the drawing buffer is kept so a test can read it.
export async function showModel(canvas, url) {
  const response = await fetch(url, { credentials: 'same-origin' });
  if (!response.ok) throw new Error(`the model could not be fetched (${response.status})`);
  const gltf = await new GLTFLoader().parseAsync(await response.arrayBuffer(), '');

  const renderer = new WebGLRenderer({ canvas, antialias: true, preserveDrawingBuffer: true });
  renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));
  const scene = new Scene();
  scene.background = new Color(0xf1efe9);
  scene.add(new HemisphereLight(0xffffff, 0x8d7c6a, 2.2));
  const sun = new DirectionalLight(0xffffff, 2.5);
  sun.position.set(1, 2, 3);
  scene.add(sun);
  scene.add(gltf.scene);

  // Frame the model: centred, the camera far enough back to see all of it.
  const box = new Box3().setFromObject(gltf.scene);
  const size = box.getSize(new Vector3()).length() || 1;
  const centre = box.getCenter(new Vector3());
  const camera = new PerspectiveCamera(40, 1, size / 100, size * 10);
  camera.position.copy(centre).add(new Vector3(0, size * 0.35, size * 1.2));
  const controls = new OrbitControls(camera, canvas);
  controls.target.copy(centre);
  controls.enableDamping = false;

  const draw = () => {
    const width = canvas.clientWidth || 300;
    const height = canvas.clientHeight || 300;
    if (canvas.width !== Math.floor(width * renderer.getPixelRatio())) {
      renderer.setSize(width, height, false);
      camera.aspect = width / height;
      camera.updateProjectionMatrix();
    }
    renderer.render(scene, camera);
    canvas.dataset.rendered = 'true';
  };
  // The controls announce each move with 'change'; drawing must not update them again
  // (update() announces a change itself).
  controls.addEventListener('change', draw);
  canvas.addEventListener('keydown', (event) => {
    const turn = { ArrowLeft: -0.2, ArrowRight: 0.2 }[event.key];
    const tilt = { ArrowUp: -0.15, ArrowDown: 0.15 }[event.key];
    const zoom = { '+': 0.85, '=': 0.85, '-': 1.15 }[event.key];
    if (turn === undefined && tilt === undefined && zoom === undefined) return;
    event.preventDefault();
    const offset = camera.position.clone().sub(controls.target);
    if (turn !== undefined) offset.applyAxisAngle(new Vector3(0, 1, 0), turn);
    if (tilt !== undefined) offset.applyAxisAngle(new Vector3().crossVectors(camera.up, offset).normalize(), tilt);
    if (zoom !== undefined) offset.multiplyScalar(zoom);
    camera.position.copy(controls.target).add(offset);
    controls.update();
    draw();
  });
  const resize = new ResizeObserver(draw);
  resize.observe(canvas);
  controls.update();
  draw();
  return {
    dispose() {
      resize.disconnect();
      controls.dispose();
      gltf.scene.traverse((node) => {
        node.geometry?.dispose();
        for (const material of [node.material].flat()) material?.dispose();
      });
      renderer.dispose();
      // Browsers cap the WebGL contexts of a page: give this one back now.
      renderer.forceContextLoss();
    },
  };
}
