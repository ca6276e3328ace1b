export * from './weights';
export * from './component';
export * from './layers/linear';
export * from './layers/conv2d';
export * from './layers/norm';
export * from './clip/tokenization_clip';
