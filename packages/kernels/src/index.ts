export * from './runtime';
export * from './elementwise/elementwise';
export * from './matmul/matmul';
export * from './conv2d/conv2d';
export * from './norm/norm';
export * from './attention/attention';
export * from './layout/layout';
export * from './embedding/embedding';
