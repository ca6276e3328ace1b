export * from './errors';
export * from './zip';
export * from './pickle';
export * from './checkpoint';
