export * from './errors.js';
export * from './zip.js';
export * from './pickle.js';
export * from './checkpoint.js';
